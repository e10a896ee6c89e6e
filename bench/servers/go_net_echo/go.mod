module aioloop.invalid/bench/go_net_echo

go 1.21

// Server: asyncio's base_events.Server plus the serving half of BaseSelectorEventLoop
// (_start_serving, _accept_connection, _accept_connection2).
//
// References: the caller's pointer (until aiol_server_free), one per attached connection
// (asyncio _attach/_detach) and one per pending wait_closed callback. Memory goes with the
// last; factory_destroy runs then.
#pragma once

#include <sys/socket.h>

#include <string>
#include <vector>

#include "../core/loop.h"

namespace aiol {

class SocketTransport;

class Server : public NetObject {
public:
    struct Listener final : IoWatcher {
        Listener() : IoWatcher(kServer) {}
        void on_io(uint32_t) override { server->accept_connections(this); }
        Server *server = nullptr;
        int fd = -1;
        sockaddr_storage addr{};
        socklen_t addr_len = 0;
        Handle *retry = nullptr;  // the ACCEPT_RETRY_DELAY timer while backing off
        int adopted_flags = -1;   // aiol_server_start_fd: the fd's O_ flags before we took it
    };

    Server(Loop *loop, const aiol_server_config &cfg, const aiol_protocol &protocol,
           aiol_protocol_factory factory, void *factory_data, aiol_destroy_fn factory_destroy);
    ~Server() override;

    // Binds and listens (every resolved address, or the Unix path), then serves.
    int bind_and_listen();
    int adopt_listener(int fd);
    int start_serving();

    int close();
    int close_clients(bool abort);
    int wait_closed(void (*cb)(aiol_server *, void *), void *ud);
    bool is_serving() const { return serving_; }
    int socket_count() const { return (int)listeners_.size(); }
    int sockname(int index, sockaddr_storage *addr, socklen_t *len) const;
    Loop *loop() const { return loop_; }  // NULL once the loop was closed
    bool detached() const;
    void release_caller();  // aiol_server_free
    // A failed start: the caller keeps factory_data, and an adopted fd as it was.
    void forget_factory_data() { factory_destroy_ = nullptr; }
    void give_back_adopted();

    void detach(SocketTransport *t);
    void on_loop_close() override;

private:
    struct Waiter {
        void (*cb)(aiol_server *, void *);
        void *ud;
    };
    aiol_server *self();
    void accept_connections(Listener *l);
    void accept_one(int fd, const sockaddr_storage &peer, socklen_t peer_len);
    void back_off(Listener *l, int err, bool brief);
    static void cb_retry(aiol_loop *, void *listener);
    static void cb_run_waiters(aiol_loop *, void *server);
    static void cb_unref(void *server);
    void maybe_wake_waiters();
    void add_listener(int fd, int adopted_flags);
    int listen_on(int fd);
    void unref();

    Loop *loop_;
    aiol_server_config cfg_;
    std::string host_, unix_path_;
    aiol_protocol proto_;
    aiol_protocol_factory factory_;
    void *factory_data_;
    aiol_destroy_fn factory_destroy_;
    std::vector<Listener *> listeners_;
    std::vector<Waiter> waiters_;
    SocketTransport *clients_ = nullptr;  // intrusive list of attached transports
    size_t active_count_ = 0;
    int refs_ = 1;  // the caller's
    bool serving_ = false;
    bool closed_ = false;
    bool linked_ = false;
    bool unlink_path_ = false;
};

}  // namespace aiol

struct aiol_server final : aiol::Server {
    using Server::Server;
};

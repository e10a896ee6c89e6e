#!/usr/bin/env python3
"""Writes the seed corpus tests/fuzz/corpus/<target>/ (a handful of small scripts per
target, in each target's op encoding; see the switch in fuzz_api.cc / fuzz_peer.cc).
Rerun after changing an encoding:  python3 tests/fuzz/make_corpus.py
"""
import os

here = os.path.dirname(os.path.abspath(__file__))


def u16(n):
    return [n & 0xff, n >> 8]


# ---- fuzz_api: (op, selector, args...) --------------------------------------------------
ADOPT, WRITE, WRITEV, WEOF, CLOSE, ABORT, PAUSE, RESUME, LIMITS, PREAD, PSEND, PSHUT, \
    PCLOSE, SOON, LATER, CANCEL, RELEASE, RUN, QUERY, STOP, ACT, SSTART, SCLOSE, SCLIENTS, \
    SWAIT, SFREE, CCONNECT, CSEND, CCLOSE, WATCH, UNWATCH, RUNONCE, SENDFILE, LCONNECT = range(34)
ACC = 6  # first accepted-connection selector (kSlots)

api = {
    'adopt_write_read_close': [ADOPT, 0, 0, WRITE, 0, *u16(3000), RUN, 0, 3, PREAD, 0, 255, 255,
                               CLOSE, 0, RUN, 0, 3],
    'server_echo_close_in_callback': [SSTART, 0, 0, 1, CCONNECT, 0, RUNONCE, 0, 2, RUN, 0, 2,
                                      ACT, ACC, 1, CSEND, 0, *u16(100), RUN, 0, 3,
                                      SWAIT, 0, 1, SCLOSE, 0, RUN, 0, 3],
    'buffered_switch_halfclose': [ADOPT, 1, 2 | (4 << 2), PSEND, 1, *u16(50), RUN, 1, 2,
                                  ACT, 1, 6, PSEND, 1, *u16(5000), RUN, 1, 3, PSHUT, 1,
                                  RUN, 1, 3, WEOF, 1, RUN, 1, 2],
    'timers_watchers': [SOON, 0, 0, *u16(2 << 5), LATER, 0, 1, *u16(1 << 5), 3, WATCH, 0, *u16(4),
                        WATCH, 1, *u16(1), RUNONCE, 0, 5, CANCEL, 0, 1, RELEASE, 0, 0,
                        UNWATCH, 0, 0, RUN, 0, 2],
    'flow_control_reset': [ADOPT, 2, 0, LIMITS, 2, *u16(100), *u16(10), 0, ACT, 2, 0x40 | 2,
                           WRITEV, 2, *u16(60000), 4, RUN, 2, 2, PCLOSE, 2, RUN, 2, 3],
    'server_clients_abort_free': [SSTART, 1, 2, 2, CCONNECT, 1, CCONNECT, 3, CCONNECT, 5, RUN, 0, 3,
                                  CSEND, 1, *u16(70), CCLOSE, 3, 1, RUN, 0, 2, SCLIENTS, 1, 1,
                                  SFREE, 1, RUN, 0, 3],
    'sendfile_then_close': [ADOPT, 3, 0, RUN, 3, 2, WRITE, 3, *u16(1000), SENDFILE, 3, *u16(0), *u16(100),
                            CLOSE, 3, RUN, 3, 3, PREAD, 3, 255, 255, RUN, 3, 3, PREAD, 3, 255, 255],
    'connect_echo_and_cancel': [SSTART, 0, 0, 2, LCONNECT, 0, 0, 50, 0, LCONNECT, 2, 1, 50, 1,
                                RUNONCE, 0, 5, RUN, 0, 3, ACT, ACC, 4, WRITE, ACC, *u16(500),
                                RUN, 0, 3, LCONNECT, 1, 2, 1, 0, RUNONCE, 0, 20, RUN, 0, 3],
}

# ---- fuzz_peer / fuzz_tls: config byte(s), then (op, arg, args...) -----------------------
CONNECT, SEND, BIG, READ, HALF, PCLOSE, RST, RUNP, PAUSEP, SACT, SNOW, RAW, HS, KEYUPD, \
    SERVER = range(15)

plain = {
    'echo': [0, CONNECT, 0, RUNP, 0, 2, SEND, 0, 8, *b'hello1234', RUNP, 0, 3, READ, 0, 255, 0,
             PCLOSE, 0, RUNP, 0, 2],
    'flow_small_rcvbuf': [4, *u16(16), CONNECT, 0x10, RUNP, 0, 1, BIG, 0, *u16(255), RUNP, 0, 3,
                          BIG, 0, *u16(255), PAUSEP, 0, 50, RUNP, 0, 3, READ, 0, *u16(9000),
                          RUNP, 0, 3, READ, 0, *u16(20000)],
    'pause_resume_reset': [1, CONNECT, 1, RUNP, 0, 1, SACT, 1, 1, SEND, 1, 2, *b'abc', RUNP, 0, 2,
                           SEND, 1, 2, *b'def', RUNP, 0, 2, SNOW, 1, 1, RUNP, 0, 2, RST, 1,
                           RUNP, 0, 3],
    'half_close_keep_open': [2, CONNECT, 2, RUNP, 0, 1, SEND, 2, 4, *b'data!', HALF, 2, RUNP, 0, 3,
                             READ, 2, 100, 0, SNOW, 2, 4, RUNP, 0, 3, READ, 2, 100, 0],
    'close_clients_mid_write': [0, CONNECT, 0, CONNECT, 1, RUNP, 0, 2, BIG, 0, *u16(40), SERVER, 0, 1,
                                RUNP, 0, 3, SEND, 1, 1, *b'xy', SERVER, 1, 0, RUNP, 0, 3],
}

hs_steps = [HS, 0, RUNP, 0, 1] * 6
tls = {
    'handshake_echo': [0, 50, 50, CONNECT, 0x20, *hs_steps, SEND, 0, 9, *b'over tls!!', RUNP, 0, 2,
                       READ, 0, 255, 0, HALF, 0, RUNP, 0, 3, PCLOSE, 0],
    'tls12_renegotiate': [0, 50, 50, CONNECT, 0x20, *hs_steps, KEYUPD, 0, 7, *hs_steps,
                          SEND, 0, 2, *b'abc', RUNP, 0, 3, READ, 0, 255, 0],
    'tls13_keyupdate_then_record': [0, 50, 50, CONNECT, 0x60, *hs_steps, KEYUPD, 1, 7, RUNP, 0, 2,
                                    RAW, 0x40, 16, 3, 3, *range(16), RUNP, 0, 3],
    'raw_bytes_on_tls_port': [8, 2, 2, CONNECT, 0, SEND, 0, 15, *b'GET / HTTP/1.1\r\n', RUNP, 0, 3,
                              PAUSEP, 0, 255, RUNP, 0, 3],
    'half_hello_timeout': [0, 1, 1, CONNECT, 0x20, HS, 0, PAUSEP, 0, 255, PAUSEP, 0, 255, RUNP, 0, 3],
    'flow_control_over_tls': [4, *u16(64), 50, 50, CONNECT, 0x30, *hs_steps, BIG, 0, *u16(255),
                              RUNP, 0, 3, BIG, 0, *u16(255), RUNP, 0, 3, READ, 0, *u16(16000),
                              RUNP, 0, 3, READ, 0, *u16(16000)],
}

for target, seeds in (('fuzz_api', api), ('fuzz_peer', plain), ('fuzz_tls', tls)):
    d = os.path.join(here, 'corpus', target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), 'wb') as f:
            f.write(bytes(data))
    print('%s: %d seeds' % (target, len(seeds)))

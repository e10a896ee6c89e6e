/* pause_writing runs before connection_made when a freshly adopted transport is written
   past the high-water mark before the loop has run. aioloop.h promises connection_made
   first. Build from the source root: cc -std=c99 tests/reliability/repro_pause_before_made.c
   -Iinclude -Lbuild/lib -laioloop -Wl,-rpath,build/lib -o /tmp/pbm && /tmp/pbm */
#include <aioloop.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
static char order[16]; static int n;
static void made(aiol_transport *t, void *ud) { (void)t, (void)ud; order[n++] = 'M'; }
static void pausew(aiol_transport *t, void *ud) { (void)t, (void)ud; order[n++] = 'P'; }
static void resumew(aiol_transport *t, void *ud) { (void)t, (void)ud; order[n++] = 'R'; }
int main(void) {
    aiol_loop *loop; aiol_loop_new(&loop);
    int sv[2]; socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    aiol_protocol p = {sizeof p}; p.connection_made = made; p.pause_writing = pausew; p.resume_writing = resumew;
    aiol_transport *t;
    if (aiol_transport_adopt(loop, sv[0], &p, NULL, &t)) return 2;
    static char big[1 << 20];
    aiol_transport_write(t, big, sizeof big);   /* > 64 KiB high-water, peer not reading */
    aiol_loop_run(loop, AIOL_RUN_NOWAIT);
    printf("callback order: %s (want M first)\n", order);
    aiol_transport_abort(t); aiol_loop_run(loop, AIOL_RUN_NOWAIT);
    aiol_loop_close(loop); aiol_loop_free(loop); close(sv[1]);
    return order[0] == 'M' ? 0 : 1;
}

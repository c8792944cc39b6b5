/* http_int — what the files of http/ share and no other module sees. */
#ifndef SLIPWAY_HTTP_INT_H
#define SLIPWAY_HTTP_INT_H

#include <stdatomic.h>
#include <stdbool.h>

/* A server's answers that follow a file (follow.c). */
struct http_follows {
    unsigned max_live; /* live follows at once: threads - 1 */
    atomic_uint nr_live;
    atomic_bool stopping; /* http_server_stop: every follow ends */
    int stop_fd;          /* an eventfd made readable (and left so) with stopping; -1 if none */
};

#endif

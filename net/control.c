/* see control.h */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LINE_MAX_LEN 64

typedef struct client {
    uv_pipe_t pipe;
    duet_control_t *ctl;
    char line[LINE_MAX_LEN + 1];
    size_t len;
    bool watching;
    bool closing;
    struct client *next;
} client_t;

struct duet_control {
    uv_pipe_t server;
    duet_control_callbacks_t cb;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    client_t *clients;
    bool closing;
};

typedef struct wreq {
    uv_write_t req;
    char *buf;
} wreq_t;

static void server_closed(uv_handle_t *h);

static duet_err_t sock_path(const char *home, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", home, DUET_CONTROL_NAME);
    return (n < 0 || (size_t)n >= cap) ? DUET_ETOOBIG : DUET_OK;
}

static void client_closed(uv_handle_t *h)
{
    client_t *c = h->data;
    duet_control_t *ctl = c->ctl;
    for (client_t **p = &ctl->clients; *p != NULL; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    free(c);
    if (ctl->closing && ctl->clients == NULL && uv_is_closing((uv_handle_t *)&ctl->server)) {
        /* the server's close callback frees ctl once it has run */
    }
}

static void client_close(client_t *c)
{
    if (!c->closing) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->pipe, client_closed);
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    client_t *c = h->data;
    (void)suggested;
    buf->base = c->line + c->len;
    buf->len = LINE_MAX_LEN - c->len;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    client_t *c = s->data;
    (void)buf;
    if (n < 0) {
        client_close(c);
        return;
    }
    c->len += (size_t)n;
    char *nl = memchr(c->line, '\n', c->len);
    if (nl == NULL) {
        if (c->len >= LINE_MAX_LEN) {
            client_close(c);
        }
        return;
    }
    *nl = 0;
    if (strcmp(c->line, "kick") == 0) {
        if (c->ctl->cb.on_kick != NULL) {
            c->ctl->cb.on_kick(c->ctl->cb.ctx);
        }
        client_close(c);
    } else if (strcmp(c->line, "watch") == 0) {
        c->watching = true;
        c->len = 0;
        uv_read_stop(s);
    } else {
        client_close(c);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    duet_control_t *ctl = server->data;
    if (status < 0 || ctl->closing) {
        return;
    }
    size_t n = 0;
    for (client_t *c = ctl->clients; c != NULL; c = c->next) {
        n++;
    }
    client_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return;
    }
    c->ctl = ctl;
    uv_pipe_init(server->loop, &c->pipe, 0);
    c->pipe.data = c;
    c->next = ctl->clients;
    ctl->clients = c;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0 || n >= DUET_CONTROL_MAX_WATCHERS + 8) {
        client_close(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, read_cb);
}

duet_err_t duet_control_listen(uv_loop_t *loop, const char *home,
                               const duet_control_callbacks_t *cb, duet_control_t **out)
{
    *out = NULL;
    duet_control_t *ctl = calloc(1, sizeof *ctl);
    if (ctl == NULL) {
        return DUET_ENOMEM;
    }
    if (sock_path(home, ctl->path, sizeof ctl->path) != DUET_OK) {
        free(ctl);
        return DUET_ETOOBIG;
    }
    ctl->cb = *cb;
    unlink(ctl->path);
    uv_pipe_init(loop, &ctl->server, 0);
    ctl->server.data = ctl;
    mode_t old = umask(0177);
    int rc = uv_pipe_bind(&ctl->server, ctl->path);
    umask(old);
    if (rc == 0) {
        (void)chmod(ctl->path, 0600);
        rc = uv_listen((uv_stream_t *)&ctl->server, 16, on_connection);
    }
    if (rc != 0) {
        ctl->closing = true;
        uv_close((uv_handle_t *)&ctl->server, server_closed);
        return DUET_ENET;
    }
    *out = ctl;
    return DUET_OK;
}

static void write_done(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    (void)status;
    free(w->buf);
    free(w);
}

void duet_control_broadcast(duet_control_t *c, const char *line, size_t len)
{
    for (client_t *k = c->clients; k != NULL; k = k->next) {
        if (!k->watching || k->closing) {
            continue;
        }
        if (uv_stream_get_write_queue_size((uv_stream_t *)&k->pipe) > DUET_CONTROL_WATCH_QUEUE) {
            client_close(k); /* a watcher that does not read is dropped, not buffered for */
            continue;
        }
        wreq_t *w = malloc(sizeof *w);
        char *b = malloc(len + 1);
        if (w == NULL || b == NULL) {
            free(w);
            free(b);
            continue;
        }
        memcpy(b, line, len);
        b[len] = '\n';
        w->buf = b;
        uv_buf_t ub = uv_buf_init(b, (unsigned)(len + 1));
        if (uv_write(&w->req, (uv_stream_t *)&k->pipe, &ub, 1, write_done) != 0) {
            free(b);
            free(w);
            client_close(k);
        }
    }
}

static void server_closed(uv_handle_t *h)
{
    free(h->data);
}

void duet_control_close(duet_control_t *c)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    for (client_t *k = c->clients; k != NULL; k = k->next) {
        client_close(k);
    }
    unlink(c->path);
    uv_close((uv_handle_t *)&c->server, server_closed);
}

static int connect_unix(const char *home, duet_err_t *err)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (sock_path(home, sa.sun_path, sizeof sa.sun_path) != DUET_OK) {
        *err = DUET_ETOOBIG;
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = DUET_EIO;
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        *err = DUET_ENOENT;
        close(fd);
        return -1;
    }
    *err = DUET_OK;
    return fd;
}

void duet_control_kick(const char *home)
{
    duet_err_t err;
    int fd = connect_unix(home, &err);
    if (fd < 0) {
        return;
    }
    struct pollfd p = {fd, POLLOUT, 0};
    if (poll(&p, 1, 1000) == 1) {
        ssize_t w = write(fd, "kick\n", 5);
        (void)w;
    }
    close(fd);
}

int duet_control_watch(const char *home, duet_err_t *err)
{
    int fd = connect_unix(home, err);
    if (fd < 0) {
        return -1;
    }
    if (write(fd, "watch\n", 6) != 6) {
        close(fd);
        *err = DUET_EIO;
        return -1;
    }
    return fd;
}

/* A zero-delay OpenAI-shaped engine in C, for benchmarks only (not a model, not a server to run).
 *
 * Why C: on a 2-core box the load client and the engine share the cores with the proxy being
 * measured. The Python stub engine costs ~15 us of CPU per request; this one a few, so the CPU
 * is left to the proxy processes (what the 1-vs-2 process scaling figure is about).
 *
 * Same answers as stub_engine.py: POST with "stream":true -> an SSE stream of --chunks content
 * events (+ the usage event when "include_usage":true), then [DONE], chunked transfer; any other
 * POST -> one fixed chat.completion JSON body; anything else -> 404. HTTP/1.1 keep-alive,
 * pipelining tolerated, one thread, epoll.
 *
 *   engine PORT MODEL CHUNKS
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define MAX_REQUEST (1 << 20)

typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

typedef struct {
    int fd;
    buf_t in;     /* bytes received, not yet consumed as requests */
    buf_t out;    /* bytes still to write (only when a write was partial) */
    size_t out_off;
} conn_t;

static buf_t resp_unary, resp_stream, resp_stream_usage, resp_404;

static void buf_add(buf_t *b, const char *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        b->data = realloc(b->data, cap);
        if (!b->data) { perror("realloc"); exit(1); }
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(buf_t *b, const char *fmt, ...) {
    char tmp[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_add(b, tmp, (size_t)n);
}

static void add_chunk(buf_t *b, const char *payload) {
    size_t n = strlen(payload);
    buf_printf(b, "%zx\r\n", n);
    buf_add(b, payload, n);
    buf_add(b, "\r\n", 2);
}

static void build_responses(const char *model, int chunks) {
    char body[1024];
    int n = snprintf(body, sizeof body,
        "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"%s\","
        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hello from the stub engine\"},"
        "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":6,\"total_tokens\":18}}",
        model);
    buf_printf(&resp_unary, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n", n);
    buf_add(&resp_unary, body, (size_t)n);

    buf_t events = {0};
    char ev[1024];
    for (int i = 0; i < chunks; i++) {
        snprintf(ev, sizeof ev,
            "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"%s\","
            "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok%d \"},\"finish_reason\":null}]}\n\n", model, i);
        add_chunk(&events, ev);
    }
    const char *head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
    buf_t done = {0};
    add_chunk(&done, "data: [DONE]\n\n");
    buf_add(&done, "0\r\n\r\n", 5);
    snprintf(ev, sizeof ev,
        "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"%s\","
        "\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n",
        model, chunks, 12 + chunks);

    buf_add(&resp_stream, head, strlen(head));
    buf_add(&resp_stream, events.data, events.len);
    buf_add(&resp_stream, done.data, done.len);

    buf_add(&resp_stream_usage, head, strlen(head));
    buf_add(&resp_stream_usage, events.data, events.len);
    add_chunk(&resp_stream_usage, ev);
    buf_add(&resp_stream_usage, done.data, done.len);

    const char *nf = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
    buf_add(&resp_404, nf, strlen(nf));
    free(events.data);
    free(done.data);
}

static void close_conn(int ep, conn_t *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in.data);
    free(c->out.data);
    free(c);
}

/* Write what is pending; 0 when all was written, 1 when the socket is full, -1 on error. */
static int flush_out(conn_t *c) {
    while (c->out_off < c->out.len) {
        ssize_t w = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 1 : -1;
        c->out_off += (size_t)w;
    }
    c->out.len = c->out_off = 0;
    return 0;
}

static void respond(conn_t *c, const buf_t *r) {
    if (c->out.len == 0) { /* the common case: straight from the prebuilt bytes, no copy */
        ssize_t w = send(c->fd, r->data, r->len, MSG_NOSIGNAL);
        if (w < 0) w = 0;
        if ((size_t)w < r->len) buf_add(&c->out, r->data + w, r->len - (size_t)w);
        return;
    }
    buf_add(&c->out, r->data, r->len);
}

static long content_length(const char *head, size_t head_len) {
    const char *p = head, *end = head + head_len;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol) break;
        if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0) return strtol(p + 15, NULL, 10);
        p = eol + 2;
    }
    return 0;
}

/* Answer every complete request in the input buffer; -1 when the input is not HTTP we accept. */
static int handle_input(conn_t *c) {
    size_t off = 0;
    for (;;) {
        char *start = c->in.data + off;
        size_t avail = c->in.len - off;
        char *hend = memmem(start, avail, "\r\n\r\n", 4);
        if (!hend) break;
        size_t head_len = (size_t)(hend - start) + 4;
        long clen = content_length(start, head_len);
        if (clen < 0 || clen > MAX_REQUEST) return -1;
        if (avail < head_len + (size_t)clen) break;
        const char *body = start + head_len;
        if (strncmp(start, "POST ", 5) != 0) {
            respond(c, &resp_404);
        } else if (memmem(body, (size_t)clen, "\"stream\":true", 13) || memmem(body, (size_t)clen, "\"stream\": true", 14)) {
            int usage = memmem(body, (size_t)clen, "\"include_usage\":true", 20) ||
                        memmem(body, (size_t)clen, "\"include_usage\": true", 21);
            respond(c, usage ? &resp_stream_usage : &resp_stream);
        } else {
            respond(c, &resp_unary);
        }
        off += head_len + (size_t)clen;
    }
    if (off) {
        memmove(c->in.data, c->in.data + off, c->in.len - off);
        c->in.len -= off;
    }
    return c->in.len > MAX_REQUEST ? -1 : 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT MODEL CHUNKS\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    build_responses(argv[2], atoi(argv[3]));

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(ls, 1024) < 0) {
        perror("bind/listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event events[MAX_EVENTS];
    char rbuf[65536];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (n < 0 && errno != EINTR) { perror("epoll_wait"); return 1; }
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (events[i].events & EPOLLOUT) {
                int r = flush_out(c);
                if (r < 0) { close_conn(ep, c); continue; }
                if (r == 0) {
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
                }
            }
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) { close_conn(ep, c); continue; }
                if (r < 0) continue;
                buf_add(&c->in, rbuf, (size_t)r);
                if (handle_input(c) < 0) { close_conn(ep, c); continue; }
                if (c->out.len) {
                    int fr = flush_out(c);
                    if (fr < 0) { close_conn(ep, c); continue; }
                    if (fr == 1) {
                        struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
                    }
                }
            }
        }
    }
}

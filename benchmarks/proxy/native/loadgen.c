/* A closed-loop HTTP/1.1 load client in C, for benchmarks only.
 *
 * Why C: the aiohttp client costs ~80-130 us of CPU per request, about a core at the rates the
 * proxy reaches, so on a 2-core box it leaves a second proxy process no core to scale into. This
 * one costs a few us per request; the cores go to what is measured.
 *
 * CONC keep-alive connections, spread round-robin over the TARGETS (host:port; several = what an
 * L4 load balancer does); each sends the same prebuilt request (REQFILE: request line, headers
 * and body, as bytes), reads the whole response (Content-Length or chunked), and sends again at
 * once. WARMUP seconds unmeasured, then SECONDS measured. Per request: latency to the last byte
 * and to the first body byte (for a stream: its first event). Prints one JSON object:
 * n, rps, latency and first-byte percentiles (ms), errors (status != 200, a stream without
 * [DONE], a connection lost mid-response), and this process's CPU per request (us).
 *
 *   loadgen REQFILE CONC WARMUP_S SECONDS STREAM(0|1) TARGET [TARGET...]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { HEAD, BODY_LEN, CHUNK_SIZE, CHUNK_DATA, CHUNK_CRLF, TRAILER, DONE };

typedef struct {
    int fd, target;
    int state, status, chunked, close_after;
    long remaining;          /* body bytes (Content-Length) or bytes left in the current chunk */
    char line[256];          /* a header block or chunk-size line being assembled */
    size_t line_len;
    char head[8192];
    size_t head_len;
    char tail[16];           /* last body bytes seen: does a stream end with [DONE]? */
    size_t sent;
    double t0, first;        /* request start; first body byte (-1 until seen) */
} conn_t;

static const char *req;
static size_t req_len;
static int stream_mode;
static struct sockaddr_in *targets;
static int ntargets;

static double *lat, *ttfb;
static size_t nlat, caplat;
static long errors;
static int measuring;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static void record(double total, double first) {
    if (!measuring) return;
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 65536;
        lat = realloc(lat, caplat * sizeof *lat);
        ttfb = realloc(ttfb, caplat * sizeof *ttfb);
        if (!lat || !ttfb) { perror("realloc"); exit(1); }
    }
    lat[nlat] = total;
    ttfb[nlat] = first;
    nlat++;
}

static void fail(const char *why) {
    if (measuring) errors++;
    if (errors < 5 && measuring) fprintf(stderr, "loadgen: %s\n", why);
}

static int open_conn(conn_t *c, int ep) {
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&targets[c->target], sizeof targets[c->target]) < 0) {
        perror("connect");
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void start_request(conn_t *c) {
    c->state = HEAD;
    c->status = c->chunked = c->close_after = 0;
    c->remaining = 0;
    c->head_len = c->line_len = 0;
    memset(c->tail, 0, sizeof c->tail);
    c->first = -1;
    c->t0 = now_s();
    /* Requests are small (< 1 KiB): one send fits the socket buffer of an idle keep-alive connection. */
    ssize_t w = send(c->fd, req, req_len, MSG_NOSIGNAL);
    c->sent = w < 0 ? 0 : (size_t)w;
    if (c->sent != req_len) fail("short send");
}

static void parse_head(conn_t *c) {
    c->head[c->head_len] = 0;
    c->status = atoi(c->head + 9); /* "HTTP/1.1 200" */
    char *p = strstr(c->head, "\r\n");
    long clen = -1;
    while (p && p[2] != '\r') {
        p += 2;
        if (strncasecmp(p, "content-length:", 15) == 0) clen = strtol(p + 15, NULL, 10);
        else if (strncasecmp(p, "transfer-encoding:", 18) == 0 && strcasestr(p, "chunked")) c->chunked = 1;
        else if (strncasecmp(p, "connection:", 11) == 0 && strcasestr(p, "close")) c->close_after = 1;
        p = strstr(p, "\r\n");
    }
    if (c->chunked) c->state = CHUNK_SIZE;
    else if (clen > 0) { c->state = BODY_LEN; c->remaining = clen; }
    else c->state = DONE;
}

static void body_bytes(conn_t *c, const char *p, size_t n) {
    if (n == 0) return;
    if (c->first < 0) c->first = now_s() - c->t0;
    if (n >= sizeof c->tail) memcpy(c->tail, p + n - sizeof c->tail, sizeof c->tail);
    else {
        memmove(c->tail, c->tail + n, sizeof c->tail - n);
        memcpy(c->tail + sizeof c->tail - n, p, n);
    }
}

/* Feed received bytes to the response parser (a server never sends ahead of a request). */
static void feed(conn_t *c, const char *p, size_t n) {
    size_t i = 0;
    while (i < n && c->state != DONE) {
        switch (c->state) {
        case HEAD:
            while (i < n) {
                if (c->head_len >= sizeof c->head - 1) { fail("header block too large"); c->state = DONE; break; }
                c->head[c->head_len++] = p[i++];
                if (c->head_len >= 4 && memcmp(c->head + c->head_len - 4, "\r\n\r\n", 4) == 0) {
                    parse_head(c);
                    break;
                }
            }
            break;
        case BODY_LEN: {
            size_t take = (size_t)c->remaining < n - i ? (size_t)c->remaining : n - i;
            body_bytes(c, p + i, take);
            i += take;
            c->remaining -= (long)take;
            if (c->remaining == 0) c->state = DONE;
            break;
        }
        case CHUNK_SIZE:
        case TRAILER:
            while (i < n) {
                char ch = p[i++];
                if (c->line_len < sizeof c->line - 1) c->line[c->line_len++] = ch;
                if (ch == '\n') {
                    c->line[c->line_len] = 0;
                    int empty = c->line_len <= 2;
                    c->line_len = 0;
                    if (c->state == TRAILER) {
                        if (empty) c->state = DONE;
                    } else {
                        c->remaining = strtol(c->line, NULL, 16);
                        c->state = c->remaining ? CHUNK_DATA : TRAILER;
                    }
                    break;
                }
            }
            break;
        case CHUNK_DATA: {
            size_t take = (size_t)c->remaining < n - i ? (size_t)c->remaining : n - i;
            body_bytes(c, p + i, take);
            i += take;
            c->remaining -= (long)take;
            if (c->remaining == 0) { c->state = CHUNK_CRLF; c->line_len = 0; }
            break;
        }
        case CHUNK_CRLF:
            if (p[i++] == '\n') c->state = CHUNK_SIZE;
            break;
        }
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, size_t n, double q) {
    if (!n) return -1;
    size_t k = (size_t)(q * (double)n);
    return v[k < n ? k : n - 1];
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: %s REQFILE CONC WARMUP_S SECONDS STREAM TARGET...\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    static char reqbuf[65536];
    req_len = fread(reqbuf, 1, sizeof reqbuf, f);
    fclose(f);
    req = reqbuf;
    int conc = atoi(argv[2]);
    double warmup = atof(argv[3]), seconds = atof(argv[4]);
    stream_mode = atoi(argv[5]);
    ntargets = argc - 6;
    targets = calloc((size_t)ntargets, sizeof *targets);
    for (int t = 0; t < ntargets; t++) {
        char host[64];
        int port;
        if (sscanf(argv[6 + t], "%63[^:]:%d", host, &port) != 2) { fprintf(stderr, "bad target %s\n", argv[6 + t]); return 2; }
        targets[t].sin_family = AF_INET;
        targets[t].sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, host, &targets[t].sin_addr);
    }

    int ep = epoll_create1(0);
    conn_t *conns = calloc((size_t)conc, sizeof *conns);
    for (int i = 0; i < conc; i++) {
        conns[i].target = i % ntargets;
        if (open_conn(&conns[i], ep) < 0) return 1;
    }
    struct epoll_event events[256];
    static char rbuf[262144];
    double start = now_s(), measure_at = start + warmup, stop_at = measure_at + seconds;
    double hard_stop = stop_at + 10, cpu0 = 0, t_measure = 0, t_last = 0;
    int active = conc;
    for (int i = 0; i < conc; i++) start_request(&conns[i]);

    while (active > 0) {
        int n = epoll_wait(ep, events, 256, 1000);
        double now = now_s();
        if (!measuring && now >= measure_at && now < stop_at) {
            measuring = 1;
            cpu0 = cpu_s();
            t_measure = now;
        }
        if (now > hard_stop) { fprintf(stderr, "loadgen: %d responses still pending at the hard stop\n", active); break; }
        for (int k = 0; k < n; k++) {
            conn_t *c = events[k].data.ptr;
            ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
            if (r <= 0) {
                fail("connection closed mid-response");
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                if (open_conn(c, ep) < 0) return 1;
                if (now < stop_at) start_request(c); else active--;
                continue;
            }
            feed(c, rbuf, (size_t)r);
            if (c->state != DONE) continue;
            double done_at = now_s();
            int ok = c->status == 200 && (!stream_mode || memmem(c->tail, sizeof c->tail, "[DONE]", 6));
            if (!ok) fail(c->status != 200 ? "status != 200" : "stream without [DONE]");
            record(done_at - c->t0, c->first < 0 ? done_at - c->t0 : c->first);
            if (measuring) t_last = done_at;
            if (c->close_after) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                if (open_conn(c, ep) < 0) return 1;
            }
            if (done_at < stop_at) start_request(c);
            else { /* finished: stop watching it, so that a late close by the server is not counted */
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                active--;
            }
        }
    }
    double cpu = cpu_s() - cpu0, wall = t_last - t_measure;
    qsort(lat, nlat, sizeof *lat, cmp_double);
    qsort(ttfb, nlat, sizeof *ttfb, cmp_double);
    printf("{\"n\": %zu, \"rps\": %.1f, \"p50_ms\": %.4f, \"p99_ms\": %.4f, \"ttfc_p50_ms\": %.4f, "
           "\"ttfc_p99_ms\": %.4f, \"total_p50_ms\": %.4f, \"errors\": %ld, \"client_cpu_us\": %.2f}\n",
           nlat, wall > 0 ? (double)nlat / wall : 0.0, pct(lat, nlat, 0.5) * 1e3, pct(lat, nlat, 0.99) * 1e3,
           pct(ttfb, nlat, 0.5) * 1e3, pct(ttfb, nlat, 0.99) * 1e3, pct(lat, nlat, 0.5) * 1e3, errors,
           nlat ? cpu / (double)nlat * 1e6 : 0.0);
    return 0;
}

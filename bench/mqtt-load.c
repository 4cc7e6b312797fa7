/*
 * One load generator process of `npm run bench:mqtt`, in C: the same work as bench/mqtt-load.ts
 * (TLS handshake with a device certificate, MQTT 3.1.1 CONNECT, wait for CONNACK, DISCONNECT,
 * close, next) for a fraction of the CPU a Node TLS client costs, so that on a small machine the
 * brokers, not the generator, get the cores.
 *
 *   mqtt-load <device list> <loops> <offset> <total>
 *
 * The device list has one device a line: "<client id> <PEM file with certificate and key>".
 * Commands come on stdin, one a line: "run <port> <milliseconds>". Each run answers two lines:
 *   result <accepted> <refused> <errors> <elapsed µs> <cpu µs> <first error>
 *   lat <CONNACK latency µs> ...
 * Built by bench/mqtt.ts with `cc -O2 ... -lssl -lcrypto`.
 */
#include "mqtt-common.h"

typedef struct {
  SSL_CTX *ctx; /* from device_ctx: one per device */
  unsigned char connect[160];
  int connect_len;
} device_t;

typedef enum { ST_CONNECTING, ST_HANDSHAKE, ST_WAIT_CONNACK, ST_DRAINING } state_t;

typedef struct conn {
  int fd;
  SSL *ssl;
  device_t *device;
  state_t state;
  int slot; /* the loop this connection belongs to; -1 once the loop moved on (draining) */
  double started;
  unsigned char buf[64];
  int have;
} conn_t;

static device_t *devices;
static int n_devices;
static int loops, offset, total;
static int *rounds;
static long accepted, refused;
static double *lat;
static size_t n_lat, cap_lat;
static int live_loops;
static double until;

static double cpu_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* MQTT 3.1.1 CONNECT (3.1): clean session, keep-alive 60 s, client id only. */
static int connect_packet(unsigned char *out, const char *client_id) {
  int id = (int)strlen(client_id);
  static const unsigned char variable[] = {0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c};
  int remaining = (int)sizeof variable + 2 + id;
  if (remaining > 127) return -1;
  out[0] = 0x10;
  out[1] = (unsigned char)remaining;
  memcpy(out + 2, variable, sizeof variable);
  out[2 + sizeof variable] = (unsigned char)(id >> 8);
  out[3 + sizeof variable] = (unsigned char)(id & 0xff);
  memcpy(out + 4 + sizeof variable, client_id, id);
  return 2 + remaining;
}

static void watch(conn_t *c, uint32_t events, int op) {
  struct epoll_event ev = {.events = events, .data.ptr = c};
  epoll_ctl(epfd, op, c->fd, &ev);
}

static void destroy(conn_t *c) {
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  if (c->ssl) SSL_free(c->ssl);
  free(c);
}

static void start(int slot);

/* The loop moves on to its next connection; this one drains until the server closes it. */
static void next(conn_t *c) {
  int slot = c->slot;
  c->slot = -1;
  rounds[slot]++;
  start(slot);
}

static void start(int slot) {
  if (now_us() >= until) {
    live_loops--;
    return;
  }
  int index = (offset + slot + rounds[slot] * total) % n_devices;
  device_t *d = &devices[index];
  conn_t *c = calloc(1, sizeof *c);
  c->device = d;
  c->slot = slot;
  c->started = now_us();
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->ssl = SSL_new(d->ctx);
  SSL_set_fd(c->ssl, c->fd);
  SSL_set_connect_state(c->ssl);
  c->state = ST_CONNECTING;
  if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
    fail_msg(strerror(errno));
    destroy(c);
    rounds[slot]++;
    start(slot);
    return;
  }
  watch(c, EPOLLOUT, EPOLL_CTL_ADD);
}

/* Advances one connection as far as it can go without blocking. */
static void step(conn_t *c) {
  for (;;) {
    switch (c->state) {
      case ST_CONNECTING: {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
          fail_msg(strerror(err));
          next(c);
          destroy(c);
          return;
        }
        c->state = ST_HANDSHAKE;
        continue;
      }
      case ST_HANDSHAKE: {
        int r = SSL_do_handshake(c->ssl);
        if (r == 1) {
          if (SSL_write(c->ssl, c->device->connect, c->device->connect_len) <= 0) {
            fail_msg("CONNECT not written");
            next(c);
            destroy(c);
            return;
          }
          c->state = ST_WAIT_CONNACK;
          watch(c, EPOLLIN, EPOLL_CTL_MOD);
          continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) return watch(c, EPOLLIN, EPOLL_CTL_MOD);
        if (e == SSL_ERROR_WANT_WRITE) return watch(c, EPOLLOUT, EPOLL_CTL_MOD);
        fail_msg("TLS handshake failed");
        ERR_clear_error();
        next(c);
        destroy(c);
        return;
      }
      case ST_WAIT_CONNACK: {
        int r = SSL_read(c->ssl, c->buf + c->have, (int)sizeof c->buf - c->have);
        if (r > 0) {
          c->have += r;
          if (c->have < 4) continue;
          if (c->buf[0] != 0x20) {
            fail_msg("not a CONNACK");
          } else if (c->buf[3] == 0) {
            accepted++;
            if (n_lat == cap_lat) lat = realloc(lat, (cap_lat = cap_lat * 2 + 1024) * sizeof *lat);
            lat[n_lat++] = now_us() - c->started;
          } else {
            refused++;
          }
          static const unsigned char disconnect[] = {0xe0, 0x00};
          SSL_write(c->ssl, disconnect, 2);
          SSL_shutdown(c->ssl);
          shutdown(c->fd, SHUT_WR);
          c->state = ST_DRAINING;
          next(c);
          continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) return;
        if (e == SSL_ERROR_WANT_WRITE) return watch(c, EPOLLOUT, EPOLL_CTL_MOD);
        fail_msg("closed before CONNACK");
        ERR_clear_error();
        next(c);
        destroy(c);
        return;
      }
      case ST_DRAINING: {
        /* Whatever the server still sends (session tickets, its close) is read and dropped. */
        char sink[4096];
        ssize_t r = read(c->fd, sink, sizeof sink);
        if (r > 0) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return watch(c, EPOLLIN, EPOLL_CTL_MOD);
        destroy(c);
        return;
      }
    }
  }
}

static void run(int port, int ms) {
  accepted = refused = errors = 0;
  first_error[0] = 0;
  n_lat = 0;
  memset(rounds, 0, loops * sizeof *rounds);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  double t0 = now_us(), c0 = cpu_us();
  until = t0 + ms * 1000.0;
  live_loops = loops;
  for (int s = 0; s < loops; s++) start(s);
  struct epoll_event events[256];
  /* Until every loop has stopped (a server that never answers is given up on after 10 s); then a
     moment for the draining ones to be closed by the server. */
  while (live_loops > 0 || now_us() < until + 200000) {
    int n = epoll_wait(epfd, events, 256, 50);
    for (int i = 0; i < n; i++) step(events[i].data.ptr);
    if (live_loops == 0 && n == 0) break;
    if (now_us() > until + 10e6) {
      if (live_loops > 0) fail_msg("no answer 10 s after the end of the run");
      break;
    }
  }
  double elapsed = now_us() - t0, cpu = cpu_us() - c0;
  printf("result %ld %ld %ld %.0f %.0f %s\n", accepted, refused, errors, elapsed, cpu, first_error[0] ? first_error : "-");
  printf("lat");
  for (size_t i = 0; i < n_lat; i++) printf(" %.0f", lat[i]);
  printf("\n");
  fflush(stdout);
}

static int add_device(const char *name, SSL_CTX *ctx) {
  devices = realloc(devices, (n_devices + 1) * sizeof *devices);
  device_t *d = &devices[n_devices];
  d->ctx = ctx;
  d->connect_len = connect_packet(d->connect, name);
  if (d->connect_len < 0) {
    fprintf(stderr, "%s: client id too long\n", name);
    return 1;
  }
  n_devices++;
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: mqtt-load <device list> <loops> <offset> <total>\n");
    return 2;
  }
  loops = atoi(argv[2]);
  offset = atoi(argv[3]);
  total = atoi(argv[4]);
  rounds = calloc(loops, sizeof *rounds);

  if (read_devices(argv[1], add_device) != 0) return 1;
  epfd = epoll_create1(0);

  char line[256];
  int port, ms;
  while (fgets(line, sizeof line, stdin)) {
    if (sscanf(line, "run %d %d", &port, &ms) == 2) run(port, ms);
  }
  return 0;
}

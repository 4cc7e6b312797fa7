/*
 * One message client process of `npm run bench:mqtt`, in C: MQTT 3.1.1 publishers and
 * subscribers over TLS with device certificates, on epoll and OpenSSL, so that the client costs
 * less than the broker it drives. Each connection writes everything a wake-up produced (PUBLISH
 * packets, PUBACKs) in one TLS write.
 *
 *   mqtt-msg <device list>
 *
 * The device list has one device a line: "<client id> <PEM file with certificate and key>".
 * Commands come on stdin, one a line, and each is answered with one line:
 *   setup <port> <topic> <subscribers> <first subscriber device> <publishers> <first publisher
 *         device> <payload bytes>
 *       connects (clean session) the subscribers, which subscribe to <topic> at QoS 1, and the
 *       publishers; answers "ready <errors> <first error>" once each is ready or failed.
 *   go <milliseconds> <window>
 *       every publisher publishes QoS 1 messages to <topic>, at most <window> unacknowledged at
 *       once, for that long; subscribers acknowledge every message at once. Answers
 *       "done <published> <acknowledged> <received> <errors> <first error>": PUBLISH packets sent
 *       and PUBACKs received by the publishers, PUBLISH packets received by the subscribers,
 *       all within the period.
 *   close
 *       DISCONNECT and close every connection; answers "closed".
 * Built by bench/mqtt.ts with `cc -O2 ... -lssl -lcrypto`.
 */
#include "mqtt-common.h"

typedef struct {
  char name[128];
  SSL_CTX *ctx;
} device_t;

typedef enum { ST_CONNECTING, ST_HANDSHAKE, ST_CONNACK, ST_SUBACK, ST_READY, ST_FAILED } state_t;

typedef struct {
  unsigned char *data;
  size_t len, cap;
} buf_t;

typedef struct conn {
  int fd;
  SSL *ssl;
  device_t *device;
  state_t state;
  int publisher;
  int inflight;
  uint16_t next_id;
  buf_t in, out;
  int want_write;
} conn_t;

static device_t *devices;
static int n_devices;
static conn_t **conns;
static int n_conns, n_settled;
static int setting_up;
static char topic[256];
static int topic_len;
static unsigned char *payload;
static int payload_len;
static int window_size;
static int running;
static double until;
static long published, acknowledged, received;

static void put(buf_t *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2 + 4096;
    b->data = realloc(b->data, b->cap);
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

/* Fixed header: type and flags, then the remaining length (MQTT 2.2.3). */
static void header(buf_t *b, unsigned char first, size_t remaining) {
  unsigned char h[5];
  int n = 0;
  h[n++] = first;
  do {
    unsigned char byte = remaining % 128;
    remaining /= 128;
    if (remaining) byte |= 0x80;
    h[n++] = byte;
  } while (remaining);
  put(b, h, n);
}

static void put16(buf_t *b, unsigned v) {
  unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)(v & 0xff)};
  put(b, x, 2);
}

static void watch(conn_t *c, uint32_t events, int op) {
  struct epoll_event ev = {.events = events, .data.ptr = c};
  epoll_ctl(epfd, op, c->fd, &ev);
}

static void print_ready(void) {
  printf("ready %ld %s\n", errors, first_error[0] ? first_error : "-");
  fflush(stdout);
  setting_up = 0;
}

static void settle(conn_t *c, state_t state) {
  int was_settled = c->state == ST_READY || c->state == ST_FAILED;
  c->state = state;
  if (!was_settled && (state == ST_READY || state == ST_FAILED)) {
    n_settled++;
    if (setting_up && n_settled == n_conns) print_ready();
  }
}

static void fail(conn_t *c, const char *what) {
  if (c->state == ST_FAILED) return;
  fail_msg(what);
  ERR_clear_error();
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  settle(c, ST_FAILED);
}

/* Writes what waits; keeps the rest for when the socket takes more. */
static void flush_out(conn_t *c) {
  size_t done = 0;
  while (done < c->out.len) {
    int r = SSL_write(c->ssl, c->out.data + done, (int)(c->out.len - done));
    if (r > 0) {
      done += (size_t)r;
      continue;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) break;
    fail(c, "write failed");
    return;
  }
  memmove(c->out.data, c->out.data + done, c->out.len - done);
  c->out.len -= done;
  int want = c->out.len > 0;
  if (want != c->want_write) {
    c->want_write = want;
    watch(c, EPOLLIN | (want ? EPOLLOUT : 0), EPOLL_CTL_MOD);
  }
}

static void publish_one(conn_t *c) {
  uint16_t id = c->next_id;
  c->next_id = id == 65535 ? 1 : id + 1;
  header(&c->out, 0x32, 2 + topic_len + 2 + payload_len);
  put16(&c->out, topic_len);
  put(&c->out, topic, topic_len);
  put16(&c->out, id);
  put(&c->out, payload, payload_len);
  c->inflight++;
  published++;
}

/* Handles the complete packets in the input buffer. */
static void packets(conn_t *c) {
  size_t at = 0;
  for (;;) {
    size_t avail = c->in.len - at;
    if (avail < 2) break;
    unsigned char *p = c->in.data + at;
    size_t remaining = 0, mult = 1, h = 1;
    int complete = 0;
    while (h < avail && h <= 4) {
      remaining += (p[h] & 0x7f) * mult;
      mult *= 128;
      if (!(p[h++] & 0x80)) {
        complete = 1;
        break;
      }
    }
    if (!complete || avail < h + remaining) break;
    unsigned char *body = p + h;
    switch (p[0] >> 4) {
      case 2: /* CONNACK */
        if (c->state != ST_CONNACK || remaining < 2) return fail(c, "unexpected CONNACK");
        if (body[1] != 0) return fail(c, "CONNECT refused");
        if (c->publisher) {
          settle(c, ST_READY);
        } else {
          /* SUBSCRIBE (3.8): packet id 1, the topic, QoS 1. */
          header(&c->out, 0x82, 2 + 2 + topic_len + 1);
          put16(&c->out, 1);
          put16(&c->out, topic_len);
          put(&c->out, topic, topic_len);
          put(&c->out, "\x01", 1);
          c->state = ST_SUBACK;
        }
        break;
      case 9: /* SUBACK */
        if (c->state != ST_SUBACK || remaining < 3) return fail(c, "unexpected SUBACK");
        if (body[2] >= 0x80) return fail(c, "subscription refused");
        settle(c, ST_READY);
        break;
      case 3: { /* PUBLISH */
        int qos = (p[0] >> 1) & 3;
        if (running) received++;
        if (qos == 1 && remaining >= 4) {
          size_t tl = ((size_t)body[0] << 8) | body[1];
          if (2 + tl + 2 > remaining) return fail(c, "malformed PUBLISH");
          unsigned char ack[4] = {0x40, 0x02, body[2 + tl], body[3 + tl]};
          put(&c->out, ack, 4);
        } else if (qos != 0) {
          return fail(c, "PUBLISH at QoS 2");
        }
        break;
      }
      case 4: /* PUBACK */
        if (c->inflight > 0) c->inflight--;
        if (running) acknowledged++;
        if (running && c->inflight < window_size) publish_one(c);
        break;
      default:
        break;
    }
    at += h + remaining;
  }
  memmove(c->in.data, c->in.data + at, c->in.len - at);
  c->in.len -= at;
}

static void start_conn(conn_t *c) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->ssl = SSL_new(c->device->ctx);
  SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_set_fd(c->ssl, c->fd);
  SSL_set_connect_state(c->ssl);
  c->state = ST_CONNECTING;
  c->next_id = 1;
  if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
    fail_msg(strerror(errno));
    settle(c, ST_FAILED);
    return;
  }
  watch(c, EPOLLOUT, EPOLL_CTL_ADD);
}

static void step(conn_t *c, uint32_t events) {
  if (c->state == ST_FAILED) return;
  if (c->state == ST_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) return fail(c, strerror(err));
    c->state = ST_HANDSHAKE;
  }
  if (c->state == ST_HANDSHAKE) {
    int r = SSL_do_handshake(c->ssl);
    if (r != 1) {
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ) return watch(c, EPOLLIN, EPOLL_CTL_MOD);
      if (e == SSL_ERROR_WANT_WRITE) return watch(c, EPOLLOUT, EPOLL_CTL_MOD);
      return fail(c, "TLS handshake failed");
    }
    /* CONNECT (3.1): MQTT 3.1.1, clean session, keep-alive 60 s, client id only. */
    int id = (int)strlen(c->device->name);
    static const unsigned char variable[] = {0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c};
    header(&c->out, 0x10, sizeof variable + 2 + id);
    put(&c->out, variable, sizeof variable);
    put16(&c->out, id);
    put(&c->out, c->device->name, id);
    c->state = ST_CONNACK;
    c->want_write = -1; /* makes flush_out set the interest to what is left */
    flush_out(c);
    return;
  }
  (void)events;
  /* Everything readable now, then the packets it holds, then what they made to write. */
  for (;;) {
    if (c->in.cap - c->in.len < 16384) {
      c->in.cap = c->in.cap * 2 + 32768;
      c->in.data = realloc(c->in.data, c->in.cap);
    }
    int r = SSL_read(c->ssl, c->in.data + c->in.len, (int)(c->in.cap - c->in.len));
    if (r > 0) {
      c->in.len += (size_t)r;
      continue;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    packets(c);
    return fail(c, e == SSL_ERROR_ZERO_RETURN ? "closed by the server" : "read failed");
  }
  packets(c);
  if (c->state != ST_FAILED) flush_out(c);
}

static void stop_running(void) {
  running = 0;
  printf("done %ld %ld %ld %ld %s\n", published, acknowledged, received, errors, first_error[0] ? first_error : "-");
  fflush(stdout);
}

static void command(char *line) {
  int port, subs, sub_first, pubs, pub_first, size, ms, window;
  char t[256];
  if (sscanf(line, "setup %d %255s %d %d %d %d %d", &port, t, &subs, &sub_first, &pubs, &pub_first, &size) == 7) {
    snprintf(topic, sizeof topic, "%s", t);
    topic_len = (int)strlen(topic);
    payload_len = size;
    payload = realloc(payload, size + 1);
    memset(payload, 'x', size);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    errors = 0;
    first_error[0] = 0;
    n_conns = subs + pubs;
    n_settled = 0;
    setting_up = 1;
    conns = calloc(n_conns ? n_conns : 1, sizeof *conns);
    for (int i = 0; i < n_conns; i++) {
      conn_t *c = calloc(1, sizeof *c);
      c->publisher = i >= subs;
      c->device = &devices[(c->publisher ? pub_first + i - subs : sub_first + i) % n_devices];
      conns[i] = c;
    }
    for (int i = 0; i < n_conns; i++) start_conn(conns[i]);
    if (n_conns == 0) print_ready();
  } else if (sscanf(line, "go %d %d", &ms, &window) == 2) {
    published = acknowledged = received = errors = 0;
    first_error[0] = 0;
    window_size = window;
    running = 1;
    until = now_us() + ms * 1000.0;
    for (int i = 0; i < n_conns; i++) {
      conn_t *c = conns[i];
      if (!c->publisher || c->state != ST_READY) continue;
      while (c->inflight < window_size) publish_one(c);
      flush_out(c);
    }
  } else if (strncmp(line, "close", 5) == 0) {
    for (int i = 0; i < n_conns; i++) {
      conn_t *c = conns[i];
      if (c->state != ST_FAILED && c->state >= ST_CONNACK) {
        static const unsigned char disconnect[] = {0xe0, 0x00};
        SSL_write(c->ssl, disconnect, 2);
        SSL_shutdown(c->ssl);
      }
      epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
      if (c->fd >= 0) close(c->fd);
      SSL_free(c->ssl);
      free(c->in.data);
      free(c->out.data);
      free(c);
    }
    free(conns);
    conns = NULL;
    n_conns = 0;
    ERR_clear_error();
    printf("closed\n");
    fflush(stdout);
  }
}

static int add_device(const char *name, SSL_CTX *ctx) {
  devices = realloc(devices, (n_devices + 1) * sizeof *devices);
  device_t *d = &devices[n_devices];
  snprintf(d->name, sizeof d->name, "%s", name);
  d->ctx = ctx;
  n_devices++;
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: mqtt-msg <device list>\n");
    return 2;
  }
  if (read_devices(argv[1], add_device) != 0) return 1;
  /* A write to a connection the server closed is an error of that connection, not the end. */
  signal(SIGPIPE, SIG_IGN);
  epfd = epoll_create1(0);
  struct epoll_event in = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &in);

  char line[1024];
  size_t have = 0;
  struct epoll_event events[256];
  for (;;) {
    int timeout = -1;
    if (running) {
      double left = until - now_us();
      if (left <= 0) {
        stop_running();
        continue;
      }
      timeout = (int)(left / 1000) + 1;
    }
    int n = epoll_wait(epfd, events, 256, timeout);
    int commands = 0;
    for (int i = 0; i < n; i++) {
      if (events[i].data.ptr) step(events[i].data.ptr, events[i].events);
      else commands = 1;
    }
    /* After the connections' events: `close` frees connections these events point to. */
    if (commands) {
      ssize_t r = read(0, line + have, sizeof line - 1 - have);
      if (r <= 0) return 0;
      have += (size_t)r;
      char *nl;
      while ((nl = memchr(line, '\n', have))) {
        *nl = 0;
        command(line);
        size_t used = (size_t)(nl - line) + 1;
        memmove(line, line + used, have - used);
        have -= used;
      }
    }
  }
}

/*
 * What the C clients of `npm run bench:mqtt` (bench/mqtt-load.c, bench/mqtt-msg.c) share: the
 * clock, the error count with its first error, and the device list with one TLS client context a
 * device. Included first by each, each built on its own by bench/mqtt.ts with
 * `cc -O2 ... -lssl -lcrypto`.
 */
#ifndef MQTT_COMMON_H
#define MQTT_COMMON_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int epfd;
static long errors;
static char first_error[160];
static struct sockaddr_in addr;

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* One more error; the first one's text is kept for the answer. */
static void fail_msg(const char *what) {
  errors++;
  if (!first_error[0]) snprintf(first_error, sizeof first_error, "%s", what);
}

/* A TLS client context (TLS 1.2 or later, no session cache) with the certificate and key of a PEM
   file; one per device, as setting them per connection would check the key against the
   certificate every time. The server certificate is not checked, for both brokers alike (as the
   Node generator's rejectUnauthorized: false). NULL, said on stderr, when the file has none. */
static SSL_CTX *device_ctx(const char *file) {
  FILE *pem = fopen(file, "r");
  if (!pem) {
    perror(file);
    return NULL;
  }
  X509 *cert = PEM_read_X509(pem, NULL, NULL, NULL);
  EVP_PKEY *key = PEM_read_PrivateKey(pem, NULL, NULL, NULL);
  fclose(pem);
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (!cert || !key || SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1) {
    fprintf(stderr, "%s: no certificate and key\n", file);
    return NULL;
  }
  return ctx;
}

/* The device list, one device a line: "<client id> <PEM file with certificate and key>"; `add`
   keeps each device (non-zero: it is refused). 0, or 1 once stderr says what was wrong. */
static int read_devices(const char *path, int (*add)(const char *name, SSL_CTX *ctx)) {
  FILE *list = fopen(path, "r");
  if (!list) {
    perror(path);
    return 1;
  }
  char name[128], file[4096];
  while (fscanf(list, "%127s %4095s", name, file) == 2) {
    SSL_CTX *ctx = device_ctx(file);
    if (!ctx || add(name, ctx) != 0) {
      fclose(list);
      return 1;
    }
  }
  fclose(list);
  return 0;
}

#endif

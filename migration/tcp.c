/* tcp:HOST:PORT endpoints for live migration: parse, connect, listen. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/tcp.h"
#include "util/log.h"

int migration_parse_tcp(const char *uri, char *host, size_t host_len, char *port,
                        size_t port_len)
{
    const char *hp, *colon;
    size_t hl;

    if (strncmp(uri, "tcp:", 4))
        return -EINVAL;
    hp = uri + 4;
    /* [v6addr]:port or host:port; the port is after the last colon. */
    colon = strrchr(hp, ':');
    if (!colon || !colon[1] || strlen(colon + 1) >= port_len)
        return -EINVAL;
    hl = (size_t)(colon - hp);
    if (hl >= 2 && hp[0] == '[' && hp[hl - 1] == ']') {
        hp++;
        hl -= 2;
    }
    if (hl >= host_len)
        return -EINVAL;
    memcpy(host, hp, hl);
    host[hl] = 0;
    strcpy(port, colon + 1);
    for (const char *p = port; *p; p++)
        if (*p < '0' || *p > '9')
            return -EINVAL;
    return 0;
}

static int resolve(const char *uri, bool passive, struct addrinfo **res)
{
    char host[256], port[16];
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    int ret;

    if (migration_parse_tcp(uri, host, sizeof(host), port, sizeof(port)) < 0) {
        error_report("migration URI '%s': expected tcp:HOST:PORT", uri);
        return -EINVAL;
    }
    if (passive)
        hints.ai_flags = AI_PASSIVE;
    ret = getaddrinfo(host[0] ? host : NULL, port, &hints, res);
    if (ret) {
        error_report("%s: %s", uri, gai_strerror(ret));
        return -EINVAL;
    }
    return 0;
}

int mig_tcp_connect(const char *uri, char *err, size_t err_len)
{
    struct addrinfo *res, *ai;
    int fd = -1, saved = ECONNREFUSED;

    if (resolve(uri, false, &res) < 0) {
        snprintf(err, err_len, "cannot resolve %s", uri);
        return -EINVAL;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            int one = 1;

            /* Sections are written whole; don't hold the last one back. */
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            break;
        }
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, err_len, "Failed to connect to '%s': %s", uri + 4, strerror(saved));
        return -saved;
    }
    return fd;
}

int mig_tcp_listen(const char *uri)
{
    struct addrinfo *res, *ai;
    int fd = -1, saved = EADDRNOTAVAIL, one = 1;

    if (resolve(uri, true, &res) < 0)
        return -EINVAL;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        error_report("%s: cannot listen: %s", uri, strerror(saved));
        return -saved;
    }
    return fd;
}

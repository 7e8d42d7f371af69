/* SPDX-License-Identifier: MIT
 *
 * deliver.h - one message to one SMTP or LMTP server, for the example
 * programs (smtp-send, smtpd's queue runner): connecting with a timeout,
 * then the llsmtp client session driven over a blocking socket, with
 * STARTTLS through OpenSSL when built with HAVE_OPENSSL.
 */
#ifndef LLSMTP_EXAMPLES_DELIVER_H
#define LLSMTP_EXAMPLES_DELIVER_H

#include <llsmtp.h>

#include <stdio.h>

/* A recipient's final reply: "451" and "4.4.1 no answer from host". */
typedef struct dlv_result {
    int code;
    char text[LLSMTP_REPLY_LINE_MAX + 1];
    char remote[LLSMTP_NAME_MAX + 1]; /* the server that said so, or "" */
    int local; /* the client session decided it (e.g. 530: no STARTTLS) */
} dlv_result;

typedef struct dlv_conf {
    llsmtp_client_cfg cfg;
    int timeout;         /* seconds for every wait; 0: RFC 5321 4.5.3.2 */
    int connect_timeout; /* seconds; 0: 30 */
    FILE *trace;         /* the dialogue with C:/S: prefixes, or NULL */
    int tls_verify;      /* STARTTLS only with a certificate that chains
                            to ca_file (NULL: the system's CAs) and names
                            the server; else 451 4.7.5 */
    const char *ca_file;
} dlv_conf;

/* Connects to ip:port. Returns the socket, or -1 with a reason in err. */
int dlv_connect_ip(const llsmtp_ip *ip, uint16_t port, int timeout, char *err,
                   size_t errcap);
/* Connects to "host:port", "[IPv6]:port" or "host" (port 25), trying
 * each address of a name. */
int dlv_connect_name(const char *spec, int timeout, char *err, size_t errcap);

/* Sends m with body[0..n) over fd (which it closes) to the server called
 * name (for TLS: SNI and the certificate check; may be NULL) and gives
 * each of the m->nto recipients its final reply in res[]: 2xx delivered,
 * 5xx refused for good, 4xx try again (also when the connection failed
 * midway). */
void dlv_send(int fd, const dlv_conf *dc, const char *name,
              const llsmtp_client_msg *m, const char *body, size_t n,
              dlv_result *res);

/* Delivers to the first of the targets that takes it (RFC 5321 5.1):
 * each address of each target in order, port 25 unless port is given;
 * a connection failure or a 4xx moves the recipients still without a
 * final reply on to the next address. Results as dlv_send's. */
void dlv_send_mx(const llsmtp_mx *mx, size_t nmx, uint16_t port,
                 const dlv_conf *dc, const llsmtp_client_msg *m,
                 const char *body, size_t n, dlv_result *res);

/* With LLSMTP_CLI_REQUIRE_TLS in dc, a server not offering STARTTLS (the
 * client's own 530) becomes 451 4.7.4: the server may be fixed, so the
 * message waits rather than bounces (as Postfix does); the queue and
 * smtp-send agree. Call once remote names the server. */
void dlv_tls_unoffered(const dlv_conf *dc, dlv_result *res, size_t n);

/* Sets every result that is not final yet (code 0) to code/text. */
void dlv_fill(dlv_result *res, size_t n, int code, const char *text);

#endif

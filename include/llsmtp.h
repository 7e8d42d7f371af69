/* SPDX-License-Identifier: MIT
 *
 * llsmtp.h - the whole public API of llsmtp, an embeddable SMTP protocol
 * library in pure C99. It is also the vendored header: the installed copy,
 * the amalgamated copy and this file are the same, and every user writes
 * #include <llsmtp.h>.
 *
 * llsmtp never opens a socket, reads a clock or touches a file. The host
 * feeds bytes in, drains reply bytes out, and decides policy in callbacks.
 *
 * Contents, in the order a host reads them:
 *   1. version, export macros, errors and statuses
 *   2. spans and replies (llsmtp_reply: every decision is one)
 *   3. the server session: what it hands the host (IP addresses, paths,
 *      ESMTP parameters, AUTH credentials) and the relay policy it may
 *      use; then its configuration, callbacks, feed/output/resume and
 *      queries
 *   4. the client session, after its building blocks (reply parser,
 *      body encoder)
 *   5. standalone helpers: IP text, paths and domains, parameters and
 *      xtext, Base64, SASL, relay policy, MX selection, DNS wire format
 *
 * Build switches (define them when compiling the library, e.g. llsmtp.c,
 * and in code using this header): none changes a public type's layout.
 *   LLSMTP_NO_DNS    leave out lib/dns.c (DNS wire format)
 *   LLSMTP_NO_MX     leave out MX ordering and relay-host parsing (IP text
 *                    stays: the relay policy uses it)
 *   LLSMTP_NO_RELAY  leave out the relay policy; a configuration that
 *                    names one is then refused (never an open relay)
 *   LLSMTP_NO_CLIENT leave out lib/client.c (the sending side: reply
 *                    parser, body encoder, client session)
 *   LLSMTP_STATIC    every public function becomes static, for hosts that
 *                    #include "llsmtp.c" into one translation unit
 */
#ifndef LLSMTP_H
#define LLSMTP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- version ---------------------------------------------------------- */

#define LLSMTP_VERSION_MAJOR 1
#define LLSMTP_VERSION_MINOR 0
#define LLSMTP_VERSION_PATCH 0
#define LLSMTP_VERSION_STRING "1.0.0"
#define LLSMTP_VERSION_NUM                                                    \
    ((LLSMTP_VERSION_MAJOR << 16) | (LLSMTP_VERSION_MINOR << 8) |             \
     LLSMTP_VERSION_PATCH)

/* ---- export macro ----------------------------------------------------- */

#if defined(LLSMTP_STATIC)
#define LLSMTP_API static
#define LLSMTP_API_DATA static
#elif defined(_WIN32) && defined(LLSMTP_BUILDING)
#define LLSMTP_API __declspec(dllexport)
#elif defined(_WIN32) && defined(LLSMTP_SHARED)
#define LLSMTP_API __declspec(dllimport)
#elif defined(__GNUC__) && __GNUC__ >= 4
#define LLSMTP_API __attribute__((visibility("default")))
#else
#define LLSMTP_API
#endif
#ifndef LLSMTP_API_DATA
#define LLSMTP_API_DATA LLSMTP_API extern
#endif

/* Runtime version, LLSMTP_VERSION_NUM of the library actually linked. */
LLSMTP_API unsigned long llsmtp_version(void);

/* ---- errors and statuses ---------------------------------------------- */

/* One vocabulary for every function and every callback: non-negative
 * values are statuses, negative values are errors. A callback returns
 * LLSMTP_OK (go on), LLSMTP_PAUSED (decision deferred: resume later) or
 * LLSMTP_E_CALLBACK (any negative value: the host failed); feed and
 * resume answer with the same names. Enumerators are append-only:
 * values never change. */
#define LLSMTP_ERRNO_MAP(X)                                                   \
    X(OK, 0, "success")                                                       \
    X(PAUSED, 1, "paused: a decision was deferred")                           \
    X(BLOCKED, 2, "blocked: drain the output queue first")                    \
    X(CLOSE, 3, "flush the output, then close the connection")                \
    X(START_TLS, 4, "flush the output, then start the TLS handshake")         \
    X(EVENT, 5, "an event was returned")                                      \
    X(E_INVAL, -1, "invalid argument")                                        \
    X(E_STATE, -2, "call not valid in the current state")                     \
    X(E_REENTRANT, -3, "called from inside a callback")                       \
    X(E_CALLBACK, -4, "a callback reported failure")                          \
    X(E_NOMEM, -5, "not enough memory")                                       \
    X(E_BUFFER, -6, "output buffer too small")                                \
    X(E_REPLY, -7, "invalid reply code or text")                              \
    X(E_SYNTAX, -8, "syntax error")                                           \
    X(E_RANGE, -9, "value out of range")                                      \
    X(E_HOSTBITS, -10, "address has bits set beyond its prefix length")       \
    X(E_VERSION, -11, "header and library disagree on version or struct size")

enum llsmtp_error {
#define LLSMTP_X_ENUM(name, value, text) LLSMTP_##name = value,
    /* clang-format off */
    LLSMTP_ERRNO_MAP(LLSMTP_X_ENUM)
#undef LLSMTP_X_ENUM
    /* clang-format on */
};

/* A static description of any value above; never NULL. */
LLSMTP_API const char *llsmtp_strerror(int err);
/* The enumerator's name, e.g. "LLSMTP_E_STATE"; never NULL. */
LLSMTP_API const char *llsmtp_errname(int err);

/* ---- spans ------------------------------------------------------------ */

/* A borrowed byte range; never NUL-terminated unless said otherwise. */
typedef struct llsmtp_span {
    const char *p;
    size_t n;
} llsmtp_span;

/* ---- versioned structs ------------------------------------------------ */

/* The first member of every struct the host fills (llsmtp_config,
 * llsmtp_client_cfg, llsmtp_client_msg, llsmtp_relay_policy). Its init
 * macro sets it to the header the host was compiled with and the sizes
 * it saw, zlib's way: a library newer than the host then reads only the
 * fields the host has (later versions append fields, never insert), and
 * one older than the host refuses the struct with LLSMTP_E_VERSION.
 * Never set it by hand. */
typedef struct llsmtp_abi {
    uint32_t version;  /* LLSMTP_VERSION_NUM of the host's header */
    uint32_t size;     /* sizeof the struct this starts */
    uint32_t aux_size; /* llsmtp_config: sizeof(llsmtp_callbacks); else 0 */
} llsmtp_abi;

/* ---- what a session wants next (llsmtp_server_wants, llsmtp_client_wants)
 *
 * A host's loop asks, does what is asked, and asks again: no flags of its
 * own. More than one bit may be set; do them in this order. */
enum llsmtp_want {
    LLSMTP_WANT_WRITE = 1u << 0,  /* output is waiting: write it, consume */
    LLSMTP_WANT_READ = 1u << 1,   /* feed bytes from the peer: first those
                                     read earlier and not yet taken, then
                                     new ones from the socket */
    LLSMTP_WANT_RESUME = 1u << 2, /* waiting on the host: server, a deferred
                                     decision (llsmtp_server_resume);
                                     client, its next call after READY or
                                     BODY (mail, quit, body, body_end) */
    LLSMTP_WANT_TLS = 1u << 3,    /* once the output is written: do the TLS
                                     handshake, then call ..._tls_started */
    LLSMTP_WANT_CLOSE = 1u << 4,  /* once the output is written: close */
    LLSMTP_WANT_EVENT = 1u << 5   /* client: an event is queued; take it
                                     (llsmtp_client_next_event) before
                                     anything but WRITE: no other bit is
                                     set with it */
};

/* ---- replies, lib/reply.c ----------------------------------------------- */

/* Limits on host-supplied reply text (before folding) and queue ids. */
#define LLSMTP_REPLY_TEXT_MAX 1024
#define LLSMTP_REPLY_LINES_MAX 16
#define LLSMTP_REPLY_ID_MAX 64

/* A decision: reply code, enhanced status code (RFC 3463) and text.
 * Deciding callbacks receive one pre-filled with the default (accept)
 * reply; leave it to accept, or change it with llsmtp_reply_set(). The
 * setters copy text, challenge and queue id into the reply itself, so
 * they may come from a buffer that dies right after the call (a
 * callback's stack frame, a reused buffer before llsmtp_server_resume).
 * Change text and id only through the setters. */
typedef struct llsmtp_reply {
    int code;          /* 200..599 */
    char enhanced[12]; /* "5.1.1", or "" for none; NUL-terminated */
    char text[LLSMTP_REPLY_TEXT_MAX + 1]; /* text_len octets, then a NUL */
    size_t text_len;
    char id[LLSMTP_REPLY_ID_MAX + 1]; /* on_data_end: queue id shown in
                                         the 250 reply; id_len octets */
    size_t id_len;
    /* Kept by the library and the setters; read them, never write them. */
    unsigned is_default; /* 1 while no setter was called: the session
                            writes its own default text for the code */
    unsigned has_text;   /* 0: the generic text for the code */
} llsmtp_reply;
/* llsmtp_reply is a value type whose layout never changes in 1.x. */

/* An accept-by-default reply for llsmtp_server_resume(). */
/* clang-format off */
#define LLSMTP_REPLY_INIT {0, {0}, {0}, 0, {0}, 0, 1, 0}
/* clang-format on */

/* Sets code, enhanced code and NUL-terminated text (NULL for a generic
 * text); the text is copied. enhanced may be NULL: the code's usual one
 * (235 2.7.0, 535 5.7.8, 454 4.7.0, ...) or else "X.0.0" of the right
 * class is used. A "\n" in text starts a new reply line; other control
 * bytes are replaced when the reply is written, so CR, LF and NUL never
 * reach the wire. Returns LLSMTP_OK, or LLSMTP_E_REPLY (code outside
 * 200..599, enhanced class not matching the code, text over
 * LLSMTP_REPLY_TEXT_MAX octets or LLSMTP_REPLY_LINES_MAX lines: refused,
 * never truncated) leaving *r unchanged. */
LLSMTP_API int llsmtp_reply_set(llsmtp_reply *r, int code,
                                const char *enhanced, const char *text);
/* The same with a text span (copied). */
LLSMTP_API int llsmtp_reply_setn(llsmtp_reply *r, int code,
                                 const char *enhanced, const char *text,
                                 size_t text_len);
/* on_auth_step: continue the exchange with a challenge (raw bytes, at
 * most 765; the library sends "334 <base64>"). Copied like the text.
 * Returns LLSMTP_OK or LLSMTP_E_REPLY when too long. */
LLSMTP_API int llsmtp_reply_challenge(llsmtp_reply *r, const void *data,
                                      size_t n);

/* Sets the queue id used in the default "250 2.6.0 <id> Queued mail for
 * delivery" reply (on_data_end); copied like the text. Returns LLSMTP_OK
 * or LLSMTP_E_REPLY when longer than LLSMTP_REPLY_ID_MAX octets or not
 * printable (refused, *r unchanged). */
LLSMTP_API int llsmtp_reply_set_id(llsmtp_reply *r, const char *id,
                                   size_t id_len);

/* Formats a reply into buf: "code[-| ]enhanced text CRLF" lines, host text
 * sanitised and folded at word boundaries so that no line exceeds 512
 * octets (RFC 5321 4.5.3.1.5), then a NUL. with_enhanced says whether the
 * enhanced code is printed. Returns the length written (without the NUL),
 * or 0 (and an empty string when buflen > 0) when buf is too small or the
 * reply is invalid. */
LLSMTP_API size_t llsmtp_reply_format(const llsmtp_reply *r, int with_enhanced,
                                      char *buf, size_t buflen);

/* ---- IP addresses (their text: lib/mx.c, below) ------------------------- */

/* An IPv4 or IPv6 address in network byte order. */
typedef struct llsmtp_ip {
    uint8_t family; /* 4 or 6; 0 = none */
    uint8_t addr[16];
} llsmtp_ip;

/* ---- paths (RFC 5321 4.1.2), as MAIL and RCPT hand them over ------------ */

enum llsmtp_path_flag {
    LLSMTP_PATH_NULL = 1u << 0,       /* the null reverse path <> */
    LLSMTP_PATH_QUOTED = 1u << 1,     /* local part is a quoted-string */
    LLSMTP_PATH_LITERAL = 1u << 2,    /* domain is an address literal */
    LLSMTP_PATH_ROUTE = 1u << 3,      /* a source route was given (ignored) */
    LLSMTP_PATH_UTF8 = 1u << 4,       /* contains UTF-8 (RFC 6531) */
    LLSMTP_PATH_POSTMASTER = 1u << 5, /* <Postmaster> with no domain */
    LLSMTP_PATH_IPV4 = 1u << 6,       /* literal is [a.b.c.d] */
    LLSMTP_PATH_IPV6 = 1u << 7        /* literal is [IPv6:...] */
};

/* A parsed path. All spans point into the parsed text. */
typedef struct llsmtp_path {
    llsmtp_span mailbox; /* "local@domain" as written, without <> or route */
    llsmtp_span local;   /* local part as written (quotes included) */
    llsmtp_span domain;  /* domain, or address literal with its [ ] */
    llsmtp_span route;   /* "@a,@b" as written, when LLSMTP_PATH_ROUTE */
    unsigned flags;      /* enum llsmtp_path_flag */
} llsmtp_path;

/* Options for llsmtp_path_parse. */
enum llsmtp_path_opt {
    LLSMTP_PARSE_ALLOW_NULL = 1u << 0,       /* accept <> (reverse path) */
    LLSMTP_PARSE_ALLOW_POSTMASTER = 1u << 1, /* accept <Postmaster> */
    LLSMTP_PARSE_UTF8 = 1u << 2              /* RFC 6531 UTF-8 addresses */
};

/* ---- ESMTP parameters (RFC 5321 4.1.2 Mail-parameters) ----------------- */

#define LLSMTP_PARAMS_MAX 16

typedef struct llsmtp_param {
    llsmtp_span key;   /* esmtp-keyword as written */
    llsmtp_span value; /* esmtp-value, empty (p may be NULL) if no "=" */
} llsmtp_param;

typedef struct llsmtp_params {
    size_t n;
    llsmtp_param v[LLSMTP_PARAMS_MAX];
} llsmtp_params;

/* ---- AUTH credentials (RFC 4954), for on_auth and on_auth_step ---------- */

/* Credentials from AUTH PLAIN or AUTH LOGIN, handed to on_auth. The spans
 * point into session memory that is wiped when on_auth returns. */
typedef struct llsmtp_auth {
    llsmtp_span mechanism; /* "PLAIN" or "LOGIN" */
    llsmtp_span authzid;   /* PLAIN authorization identity; may be empty */
    llsmtp_span user;      /* authentication identity, never empty */
    llsmtp_span password;  /* never empty */
} llsmtp_auth;

/* One step of another SASL mechanism (CRAM-MD5, XOAUTH2, SCRAM, ...),
 * handed to on_auth_step. data is the decoded client response. */
typedef struct llsmtp_auth_step {
    llsmtp_span mechanism; /* as the client wrote it */
    llsmtp_span data;      /* decoded; empty at step 0 without one */
    unsigned step;         /* 0: the AUTH command itself */
    int has_data;          /* step 0: whether an initial response came */
} llsmtp_auth_step;

/* ---- the relay policy a configuration may name (lib/relay.c) ------------ */

/* A network: an address and a prefix length. IPv4-mapped IPv6 networks
 * (::ffff:a.b.c.d/96..128) are kept as IPv4. */
typedef struct llsmtp_cidr {
    llsmtp_ip ip;
    uint8_t bits;
} llsmtp_cidr;

/* Who may send mail where. Everything is borrowed (arrays and strings
 * must outlive the policy); nothing is allocated. Domain entries match
 * exactly, ASCII case-insensitively, ignoring one trailing dot; an entry
 * written ".company.test" matches every subdomain, not company.test. */
typedef struct llsmtp_relay_policy {
    llsmtp_abi abi; /* set by llsmtp_relay_policy_init; never by hand */
    const char *const *local_domains; /* mail for these is delivered here */
    size_t nlocal;
    const char *const *relay_domains; /* accepted and forwarded */
    size_t nrelay;
    const llsmtp_cidr *networks; /* clients here may relay anywhere */
    size_t nnetworks;
    const llsmtp_ip *own_addrs; /* user@[addr] is local for these */
    size_t nown;
    int auth_may_relay;        /* authenticated clients relay anywhere (1) */
    int trusted_may_relay;     /* clients in networks relay anywhere (1) */
    int deny_code;             /* reply for DENIED: 550 */
    const char *deny_enhanced; /* "5.7.1" */
    const char *deny_text;     /* NULL: "Unable to relay for <rcpt>" */
} llsmtp_relay_policy;

/* llsmtp_relay_check() verdicts; llsmtp_server_rcpt_verdict() returns
 * them too, so they are declared whatever the switches. */
enum llsmtp_relay_verdict {
    LLSMTP_RELAY_LOCAL = 0,   /* the final domain is ours: deliver here */
    LLSMTP_RELAY_ALLOWED = 1, /* relay domain, trusted or authenticated */
    LLSMTP_RELAY_DENIED = 2   /* refuse: 550 5.7.1 Unable to relay */
};

/* ---- the server session (lib/server*.c) ---------------------------------
 *
 * One session per connection, in memory the host gives it
 * (llsmtp_server_size, llsmtp_server_init); opaque. Threads: the library
 * has no global state, so sessions run in any threads at once; calls on
 * one session must not overlap (one thread at a time, e.g. the event
 * loop that owns the connection; a decision made elsewhere is handed
 * back to it and delivered there with llsmtp_server_resume). A
 * configuration, its callback table and relay policy are read-only and
 * shared by all sessions, in every thread. A session must not be moved
 * or copied (it points into its own memory); a wrapper object that moves
 * re-points the session at itself with llsmtp_server_set_user. */

typedef struct llsmtp_server llsmtp_server;

/* Extensions advertised in EHLO (config.extensions). */
enum llsmtp_ext {
    LLSMTP_EXT_PIPELINING = 1u << 0,     /* RFC 2920 */
    LLSMTP_EXT_SIZE = 1u << 1,           /* RFC 1870 */
    LLSMTP_EXT_8BITMIME = 1u << 2,       /* RFC 6152 */
    LLSMTP_EXT_ENHANCEDSTATUS = 1u << 3, /* RFC 2034 */
    LLSMTP_EXT_VRFY = 1u << 4,           /* advertise VRFY */
    LLSMTP_EXT_HELP = 1u << 5,           /* advertise HELP */
    LLSMTP_EXT_AUTH = 1u << 6,           /* RFC 4954 (cfg.auth_mechanisms) */
    LLSMTP_EXT_STARTTLS = 1u << 7,       /* RFC 3207: the host can do TLS */
    LLSMTP_EXT_CHUNKING = 1u << 8,       /* RFC 3030 BDAT */
    LLSMTP_EXT_BINARYMIME = 1u << 9,     /* RFC 3030 BODY=BINARYMIME */
    LLSMTP_EXT_DSN = 1u << 10,           /* RFC 3461 RET ENVID NOTIFY ORCPT */
    LLSMTP_EXT_SMTPUTF8 = 1u << 11,      /* RFC 6531 */
    LLSMTP_EXT_ETRN = 1u << 12           /* RFC 1985 */
};
#define LLSMTP_EXT_DEFAULT                                                    \
    (LLSMTP_EXT_PIPELINING | LLSMTP_EXT_SIZE | LLSMTP_EXT_8BITMIME |          \
     LLSMTP_EXT_ENHANCEDSTATUS | LLSMTP_EXT_VRFY | LLSMTP_EXT_HELP)

/* What to do with a bare LF or bare CR inside DATA (as Postfix 3.9's
 * smtpd_forbid_bare_newline). Under every setting only <CRLF>.<CRLF> ends
 * the message. */
enum llsmtp_bare_lf {
    LLSMTP_BARE_LF_NORMALIZE = 0, /* default: a bare LF or CR line ending is
                                     delivered as CRLF */
    LLSMTP_BARE_LF_REJECT = 1,    /* drain to the real end, 550 5.5.2 */
    LLSMTP_BARE_LF_PASS = 2       /* USE WITH CAUTION: bytes untouched; a
                                     relay passing them on can be abused for
                                     SMTP smuggling */
};

/* Option flags (config.flags). */
enum llsmtp_cfg_flag {
    /* Refuse early talkers and improper pipelining with 554 5.5.0 and
     * close. The greeting counts as written when llsmtp_server_consume()
     * has drained it; the host calls llsmtp_server_input_drained() when
     * everything it read so far has been fed. Improper: anything in the
     * same read after a line that ends a group (RFC 2920 3.1): EHLO,
     * HELO, LHLO, DATA, VRFY, EXPN, TURN, QUIT, NOOP, STARTTLS, ETRN, a
     * SASL response, AUTH without an initial response, and any line
     * answered with 334 (RFC 4954 4: an initial response may be
     * pipelined past only when the exchange ends in one round trip);
     * without PIPELINING in force (RFC 5321 4.3.1), every line and the
     * end of every message and chunk. */
    LLSMTP_CFG_SYNC_CHECK = 1u << 0,
    /* Reply 502 instead of 500 to unknown commands. */
    LLSMTP_CFG_502_UNKNOWN = 1u << 1,
    /* USE WITH CAUTION: offer AUTH without TLS (loopback, tests, trusted
     * links); PLAIN and LOGIN then cross the wire in the clear. */
    LLSMTP_CFG_AUTH_CLEARTEXT = 1u << 2,
    /* Also send "AUTH=PLAIN LOGIN", which old Outlook/Exchange look for. */
    LLSMTP_CFG_AUTH_LEGACY = 1u << 3,
    /* MAIL before AUTH: 530 5.7.0 Authentication required (submission). */
    LLSMTP_CFG_REQUIRE_AUTH = 1u << 4,
    /* MAIL before STARTTLS: 530 5.7.0 Must issue a STARTTLS command
     * first. */
    LLSMTP_CFG_REQUIRE_TLS = 1u << 5,
    /* Behind a load balancer: the connection starts with a PROXY protocol
     * header (HAProxy's v1 text or v2 binary form) carrying the real
     * client address, read before the greeting. A missing or malformed
     * header closes the connection with no reply. */
    LLSMTP_CFG_PROXY = 1u << 6,
    /* LMTP (RFC 2033): LHLO instead of HELO/EHLO (which are refused), and
     * after the message one reply per accepted recipient, in RCPT order
     * (on_lmtp_rcpt). */
    LLSMTP_CFG_LMTP = 1u << 7,
    /* The session keeps no output queue of its own: the host lends one
     * (llsmtp_server_lend) while replies wait to be written and takes it
     * back (llsmtp_server_reclaim) once they are, so an idle session
     * costs its state and its line buffer only (llsmtp_server_size),
     * and one buffer per event loop serves every session that has
     * nothing waiting. A buffer larger than llsmtp_server_lend_size()
     * lets a whole pipelined batch's replies leave in one write. */
    LLSMTP_CFG_LENT_OUTPUT = 1u << 8
};

/* Why a message was abandoned (on_data_abort). */
enum llsmtp_abort {
    /* Over config.max_size. DATA: on_data has been given exactly the
     * first max_size octets of the message as stored (unstuffed, line
     * ends as delivered), however the input was split, then this; the
     * rest is read and dropped, and 552 is the reply at the end. BDAT: a
     * chunk whose size (known from its BDAT line) would pass the limit is
     * judged at that line, before any of it is read: none of its octets
     * is delivered (it is read and dropped, then 552), so on_data has
     * seen only the whole chunks before it. */
    LLSMTP_ABORT_SIZE = 1,
    LLSMTP_ABORT_BARE_LF = 2, /* bare LF/CR under REJECT: 550 at the end */
    LLSMTP_ABORT_CLOSED = 3,  /* the session ended with the message open:
                                 eof, timeout, shutdown, QUIT or a 421
                                 (error limit, HTTP verb, unreadable BDAT
                                 size) between BDAT chunks */
    LLSMTP_ABORT_RESET = 4    /* the client ended the transaction between
                                 BDAT chunks: RSET, HELO/EHLO/LHLO again,
                                 or a BDAT with junk after its size (its
                                 chunk is dropped); STARTTLS cannot, as it
                                 is refused inside a transaction */
};

/* Which decision a paused session awaits (llsmtp_server_pending). */
enum llsmtp_pending {
    LLSMTP_PENDING_NONE = 0,
    LLSMTP_PENDING_CONNECT,
    LLSMTP_PENDING_HELO,
    LLSMTP_PENDING_MAIL,
    LLSMTP_PENDING_RCPT,
    LLSMTP_PENDING_DATA_START,
    LLSMTP_PENDING_DATA, /* on_data asked for backpressure */
    LLSMTP_PENDING_DATA_END,
    LLSMTP_PENDING_RSET,
    LLSMTP_PENDING_VRFY,
    LLSMTP_PENDING_EXPN,
    LLSMTP_PENDING_HELP,
    LLSMTP_PENDING_TURN,
    LLSMTP_PENDING_QUIT,
    LLSMTP_PENDING_AUTH, /* on_auth or on_auth_step */
    LLSMTP_PENDING_STARTTLS,
    LLSMTP_PENDING_ETRN
};

/* The RFC 5321 4.5.3.2 timer that applies now (llsmtp_server_timeout). */
enum llsmtp_timeout {
    LLSMTP_TIMEOUT_NONE = 0,   /* closed, or waiting on the host */
    LLSMTP_TIMEOUT_GREETING,   /* before the greeting is decided */
    LLSMTP_TIMEOUT_IDLE,       /* awaiting HELO/EHLO or any command */
    LLSMTP_TIMEOUT_MAIL,       /* awaiting MAIL after HELO/EHLO */
    LLSMTP_TIMEOUT_RCPT,       /* inside a transaction: RCPT or DATA */
    LLSMTP_TIMEOUT_DATA_INIT,  /* 354 sent, no data yet */
    LLSMTP_TIMEOUT_DATA_BLOCK, /* receiving message data */
    LLSMTP_TIMEOUT_FINAL_DOT   /* end of data seen; host deciding */
};

/* What a reply answers (llsmtp_reply_info.phase). */
enum llsmtp_reply_phase {
    LLSMTP_RI_COMMAND = 0,  /* the command line named by verb (a second
                               reply to the same line, e.g. the 421 after
                               the error limit, says the same) */
    LLSMTP_RI_GREETING = 1, /* the greeting; verb "" */
    LLSMTP_RI_CHUNK = 2,    /* a BDAT chunk, once its octets were read
                               ("250 n octets received", 552); verb "BDAT",
                               arg the chunk's size */
    LLSMTP_RI_MESSAGE = 3,  /* the final reply to a message: after
                               <CRLF>.<CRLF> (verb "DATA") or the BDAT LAST
                               chunk (verb "BDAT"); in LMTP one per
                               accepted recipient (rcpt says which) */
    LLSMTP_RI_SESSION = 4,  /* caused by no client line: timeout, shutdown,
                               the 421 after a host failure, the
                               synchronization check's 554; verb "-" */
    LLSMTP_RI_AUTH_STEP = 5 /* a line of an AUTH exchange (a SASL
                               response, RFC 4954 4, "*" included) after
                               the AUTH command's 334; verb "AUTH", arg
                               always empty */
};

/* One queued reply, for on_reply (logging). Every pointer is valid only
 * during the call. */
typedef struct llsmtp_reply_info {
    const char *verb;     /* canonical upper-case verb of the command answered
                             ("MAIL", "RCPT", "DATA", "BDAT", "AUTH", "GET",
                             ...), NUL-terminated; "" for the greeting, for an
                             unknown verb (never echoed: a stray SASL response
                             would arrive as one), an empty or overlong line;
                             "-" for LLSMTP_RI_SESSION */
    llsmtp_span arg;      /* the command's argument as received (trimmed);
                             for the AUTH command line only its mechanism,
                             when it is one the configuration offers (else
                             empty), never the initial response; empty for
                             every line of an AUTH exchange (AUTH_STEP) and
                             for unknown verbs (never a credential); for the
                             replies after a BDAT chunk (CHUNK, and MESSAGE
                             after BDAT LAST) the chunk's size and " LAST" if
                             given ("7000", "123 LAST"; digits without leading
                             zeros); empty after DATA's message */
    int code;             /* 200..599 */
    const char *enhanced; /* as sent: "" when none (or the extension is
                             off) */
    llsmtp_span text;     /* the first reply line's text, as sent */
    int phase;            /* enum llsmtp_reply_phase */
    long rcpt;            /* LMTP message replies: the recipient index (RCPT
                             order); otherwise -1 */
} llsmtp_reply_info;

/* Callback table. Every member may be NULL: "accept with the default
 * reply", except on_vrfy (252), on_expn (502) and on_turn (502) whose
 * safe defaults refuse. Spans are valid only during the call. Calling
 * feed/resume/reset/eof from inside a callback returns LLSMTP_E_REENTRANT.
 *
 * Every callback returns LLSMTP_OK, LLSMTP_PAUSED or a failure
 * (LLSMTP_E_CALLBACK, or any negative value); any other value is a
 * failure too. Deferring: a deciding callback returns LLSMTP_PAUSED and
 * leaves r as it came (a reply or queue id set before deferring would
 * be lost, so it is refused as a failure); feed returns LLSMTP_PAUSED,
 * llsmtp_server_pending() says which decision is awaited and
 * llsmtp_server_pending_arg() gives its argument (the recipient, ...)
 * until the host delivers the decision with llsmtp_server_resume(), from
 * any later point of its loop (a timer, a DNS answer, another thread's
 * result handed back). If the session ends first, on_cancel says so.
 * The table is sized by the header the configuration was initialised
 * with (llsmtp_config_init records it): later versions append members. */
typedef struct llsmtp_callbacks {
    /* Greeting. Default "220 <hostname> ESMTP <banner>". A 421 closes at
     * once; a 554 makes the session answer 503 until QUIT (RFC 5321 3.1). */
    int (*on_connect)(llsmtp_server *s, llsmtp_reply *r);
    /* HELO/EHLO. domain: the argument as given. A 2xx set here replaces
     * the first line only: the EHLO keywords still follow (the session
     * acts on them), and no enhanced code is sent (RFC 2034 3). */
    int (*on_helo)(llsmtp_server *s, llsmtp_span domain, int is_ehlo,
                   llsmtp_reply *r);
    /* MAIL FROM. SIZE and BODY are already validated; other parameters
     * were approved by on_param. */
    int (*on_mail_from)(llsmtp_server *s, const llsmtp_path *from,
                        const llsmtp_params *params, llsmtp_reply *r);
    /* RCPT TO. */
    int (*on_rcpt)(llsmtp_server *s, const llsmtp_path *to,
                   const llsmtp_params *params, llsmtp_reply *r);
    /* A MAIL/RCPT parameter the library does not know. r arrives as
     * "555 5.5.4 Unsupported parameter"; set a 2xx code to accept it.
     * is_rcpt: 0 for MAIL, 1 for RCPT. Must not return PENDING. */
    int (*on_param)(llsmtp_server *s, int is_rcpt, const llsmtp_param *p,
                    llsmtp_reply *r);
    /* DATA accepted by the library (354 by default). */
    int (*on_data_start)(llsmtp_server *s, llsmtp_reply *r);
    /* A piece of the message: dot-unstuffed, CRLF preserved, terminator
     * removed. May point into the fed buffer or to static data. PENDING
     * pauses after this piece (backpressure); resume with NULL. */
    int (*on_data)(llsmtp_server *s, const char *p, size_t n);
    /* End of message. Default "250 2.6.0 <id> Queued mail for delivery". */
    int (*on_data_end)(llsmtp_server *s, llsmtp_reply *r);
    /* The message was abandoned (enum llsmtp_abort); no on_data_end will
     * follow. Drop what was stored. Every message on_data_start opened
     * ends in exactly one on_data_end or on_data_abort, on every path. The
     * return value is honoured (a failure). */
    int (*on_data_abort)(llsmtp_server *s, int why);
    /* RSET only. Default 250. The other ends of a transaction are not
     * reported here: HELO/EHLO/LHLO again through on_helo, STARTTLS
     * through llsmtp_server_tls_started (both forget the transaction), and
     * a message already open between BDAT chunks through
     * on_data_abort(LLSMTP_ABORT_RESET). */
    int (*on_rset)(llsmtp_server *s, llsmtp_reply *r);
    /* VRFY/EXPN/HELP argument as given (may be empty). */
    int (*on_vrfy)(llsmtp_server *s, llsmtp_span arg, llsmtp_reply *r);
    int (*on_expn)(llsmtp_server *s, llsmtp_span arg, llsmtp_reply *r);
    int (*on_help)(llsmtp_server *s, llsmtp_span arg, llsmtp_reply *r);
    /* TURN (RFC 821). Refused by default: it hands mail to an
     * unauthenticated peer. */
    int (*on_turn)(llsmtp_server *s, llsmtp_reply *r);
    /* QUIT. Default 221; the session then returns LLSMTP_CLOSE. */
    int (*on_quit)(llsmtp_server *s, llsmtp_reply *r);
    /* AUTH PLAIN / LOGIN. r arrives as "535 5.7.8 Authentication
     * credentials invalid" (a missing callback refuses everyone); set 235
     * to accept, 454 for a temporary failure. The credentials are wiped
     * from session memory when this returns; so is every AUTH line the
     * session copied, once answered (refused, cancelled, too long), and
     * a half-received one at eof, timeout, shutdown and reset. */
    int (*on_auth)(llsmtp_server *s, const llsmtp_auth *cred, llsmtp_reply *r);
    /* Any other mechanism in cfg.auth_mechanisms: answer each step with
     * llsmtp_reply_challenge() to continue, or 235 / 535 / 454 to end. */
    int (*on_auth_step)(llsmtp_server *s, const llsmtp_auth_step *st,
                        llsmtp_reply *r);
    /* STARTTLS. Default "220 2.0.0 Ready to start TLS"; 454 refuses. */
    int (*on_starttls)(llsmtp_server *s, llsmtp_reply *r);
    /* Notification: the relay policy refused this recipient (for logs and
     * for fail2ban-style defences); the refusal itself is not the host's
     * to change. Return LLSMTP_OK (or a failure). */
    int (*on_relay_denied)(llsmtp_server *s, const llsmtp_path *to);
    /* ETRN (RFC 1985): arg is "domain", "@domain" or "#queue". Default
     * "250 2.0.0 Queuing for node <arg> started"; refuse with 458 (unable
     * to queue) or 459 (node not allowed). */
    int (*on_etrn)(llsmtp_server *s, llsmtp_span arg, llsmtp_reply *r);
    /* LMTP: after on_data_end accepted the message, once per accepted
     * recipient (index 0.. in RCPT order); r arrives as on_data_end's
     * reply. Change it to fail one recipient (e.g. 552 5.2.2 mailbox
     * full). Must not return PENDING. */
    int (*on_lmtp_rcpt)(llsmtp_server *s, size_t index, llsmtp_reply *r);
    /* Observer: called once for every reply the session queues, just
     * after queuing it and in output order, so a host can log refused
     * commands (4xx/5xx) and, verbosely, every command, without parsing
     * the stream or guessing what is a credential. Cannot change the
     * reply; feed/resume/... from here return LLSMTP_E_REENTRANT. Costs
     * nothing when NULL. */
    void (*on_reply)(llsmtp_server *s, const llsmtp_reply_info *ri);
    /* A deferred decision (enum llsmtp_pending) will never be delivered:
     * the session ended or was reset while it was pending (eof,
     * timeout_expired, shutdown, reset). Called once, from inside that
     * call; forget the decision: resuming now returns LLSMTP_CLOSE or
     * LLSMTP_E_STATE, and the session's memory is the host's to free once
     * the call returns. */
    void (*on_cancel)(llsmtp_server *s, int pending);
} llsmtp_callbacks;

/* The most mechanisms config.auth_mechanisms may name. */
#define LLSMTP_AUTH_MECHS_MAX 8

/* Session configuration: borrowed read-only by every session, must
 * outlive them. Fill with llsmtp_config_init(), then change fields. */
struct llsmtp_relay_policy;

typedef struct llsmtp_config {
    llsmtp_abi abi;       /* set by llsmtp_config_init; never by hand */
    const char *hostname; /* NUL-terminated; greeting, EHLO, 221, 421 */
    const char *banner;   /* text after "ESMTP" in the greeting */
    unsigned extensions;  /* enum llsmtp_ext, LLSMTP_EXT_DEFAULT */
    unsigned flags;       /* enum llsmtp_cfg_flag, 0 */
    int bare_lf;          /* enum llsmtp_bare_lf, NORMALIZE */
    size_t max_line;      /* command line incl. CRLF, 512 (>= 512) */
    size_t max_rcpt;      /* recipients per transaction, 1000 (>= 100) */
    uint64_t max_size;    /* message size limit, 0 = none; see
                             LLSMTP_ABORT_SIZE for what is delivered */
    unsigned max_errors;  /* bad commands before 421, 20 */
    size_t output_size;   /* output queue bytes, 4096 (raised as needed) */
    const llsmtp_callbacks *callbacks; /* may be NULL */
    /* Relay policy applied at RCPT before on_rcpt (NULL: none, every
     * recipient goes to on_rcpt). A DENIED recipient is refused with the
     * policy's reply and on_rcpt is not called: no open relay. */
    const struct llsmtp_relay_policy *relay;
    unsigned max_rcpt_rejects; /* refused RCPTs before 421, 100 (0: none) */
    /* AUTH (LLSMTP_EXT_AUTH): mechanisms offered, space separated,
     * "PLAIN LOGIN"; others need on_auth_step and are not offered
     * without it. At most LLSMTP_AUTH_MECHS_MAX names of 1..20 letters,
     * digits, "-" and "_" (RFC 4422 3.1), at least one of them offered
     * (RFC 4954 3: AUTH lists the mechanisms). */
    const char *auth_mechanisms;
    unsigned max_auth_failures; /* failed AUTH before 421, 3 */
    size_t max_auth_line;       /* AUTH lines, 12288 (RFC 4954 4); the line
                                   buffer grows to this when AUTH is on */
} llsmtp_config;

/* Fills *cfg with the defaults above (hostname "localhost") and its tag
 * (llsmtp_abi: this header's version, sizeof(llsmtp_config) and
 * sizeof(llsmtp_callbacks), so the callback table cfg->callbacks points
 * to must be compiled with the same header). Returns LLSMTP_OK, or
 * LLSMTP_E_VERSION when the library linked does not take structs of this
 * header (another major version, or a newer header than the library). */
#define llsmtp_config_init(cfg)                                               \
    llsmtp_config_init_((cfg), LLSMTP_VERSION_NUM, sizeof(llsmtp_config),     \
                        sizeof(llsmtp_callbacks))
LLSMTP_API int llsmtp_config_init_(llsmtp_config *cfg, unsigned long version,
                                   size_t cfg_size, size_t callbacks_size);

/* Checks a configuration: hostname a domain or an address literal
 * ("[192.0.2.1]", "[IPv6:2001:db8::1]"; no space, CR, LF or other
 * control byte can reach a reply through it), banner printable ASCII of
 * at most 255 octets, known extension and flag bits, limits in the
 * ranges above, AUTH mechanism names valid and, with LLSMTP_EXT_AUTH,
 * at least one that can be offered (PLAIN or LOGIN, or any name when
 * callbacks->on_auth_step is set). Returns LLSMTP_OK, or
 * LLSMTP_E_INVAL with *why (when why is not NULL) set to a static
 * sentence naming the field and the problem ("hostname: ..."); *why is
 * NULL on success. May be called anywhere. */
LLSMTP_API int llsmtp_config_check(const llsmtp_config *cfg, const char **why);

/* Bytes of memory a session with this configuration needs, or 0 if the
 * configuration is invalid (llsmtp_config_check says why). */
LLSMTP_API size_t llsmtp_server_size(const llsmtp_config *cfg);

/* LLSMTP_CFG_LENT_OUTPUT: the smallest buffer llsmtp_server_lend takes
 * (0 for an invalid configuration). */
LLSMTP_API size_t llsmtp_server_lend_size(const llsmtp_config *cfg);

/* LLSMTP_CFG_LENT_OUTPUT: lends buf[0..cap) (cap >= lend_size) as the
 * output queue. Lend before every call that may queue a reply: start,
 * feed and resume refuse to run without a loan (LLSMTP_E_STATE);
 * timeout_expired and shutdown then close without their 421. Returns
 * LLSMTP_OK (also for the loan the session already holds),
 * LLSMTP_E_STATE (not in this mode, or the session still holds another
 * buffer) or LLSMTP_E_INVAL (NULL, too small). */
LLSMTP_API int llsmtp_server_lend(llsmtp_server *s, char *buf, size_t cap);

/* Takes the loan back when every byte of it was written: returns the
 * buffer, or NULL while output waits (the session keeps it: lend another
 * buffer to the next session), when nothing was lent, or from inside a
 * callback (lend returns LLSMTP_E_REENTRANT there). */
LLSMTP_API char *llsmtp_server_reclaim(llsmtp_server *s);

/* Places a session in mem (memlen >= llsmtp_server_size(cfg), aligned for
 * any object, as malloc returns). cfg is borrowed. Returns the session, or
 * NULL on a bad argument: mem NULL or not so aligned, memlen too small, an
 * invalid configuration. No callback is called. */
LLSMTP_API llsmtp_server *llsmtp_server_init(void *mem, size_t memlen,
                                             const llsmtp_config *cfg,
                                             void *user);

/* Starts the dialogue: calls on_connect and queues the greeting. Returns
 * LLSMTP_OK, LLSMTP_PAUSED (on_connect deferred), LLSMTP_CLOSE (a 421
 * greeting) or an error. */
LLSMTP_API int llsmtp_server_start(llsmtp_server *s);

/* Feeds bytes read from the client. Always sets *used. Returns
 * LLSMTP_OK (all consumed), LLSMTP_PAUSED (a callback deferred; the
 * bytes from buf + *used must be fed again after llsmtp_server_resume;
 * while STARTTLS is being decided every byte is taken and dropped, as
 * the client may send nothing before its reply: CVE-2011-0411),
 * LLSMTP_BLOCKED (output queue full: drain it, then feed buf + *used),
 * LLSMTP_START_TLS (flush the output, do the handshake, then call
 * llsmtp_server_tls_started), LLSMTP_CLOSE (flush the output, then
 * close), or a negative error; llsmtp_server_wants() says the same at
 * any time, so a host may ignore the status but for failures.
 * LLSMTP_E_CALLBACK (a callback returned a failure, left an invalid reply or
 * deferred where it may not) is sticky: llsmtp_server_failed_cb names the
 * callback, a message in progress has been abandoned (on_data_abort) and
 * "421 4.3.0" is queued for the client: flush the output, then close. A
 * client's protocol error is a reply in
 * the output, not an error. Any split of the same bytes gives the same
 * callbacks and output. */
LLSMTP_API int llsmtp_server_feed(llsmtp_server *s, const char *buf,
                                  size_t len, size_t *used);

/* The client closed its side. Mid-data, on_data_abort(CLOSED) is called.
 * Returns LLSMTP_CLOSE (or an error). */
LLSMTP_API int llsmtp_server_eof(llsmtp_server *s);

/* Delivers a deferred decision: NULL or a LLSMTP_REPLY_INIT reply accepts
 * with the default (a queue id alone may be set in it). r is copied.
 * Returns the status feed would have returned for the bytes already
 * consumed (LLSMTP_OK, LLSMTP_CLOSE, LLSMTP_PAUSED when the continuation
 * deferred again), LLSMTP_E_STATE when nothing is pending, LLSMTP_CLOSE
 * when the decision was cancelled (on_cancel), or LLSMTP_E_REPLY for an
 * invalid reply (nothing changes). */
LLSMTP_API int llsmtp_server_resume(llsmtp_server *s, const llsmtp_reply *r);

/* Which decision a paused session awaits (enum llsmtp_pending). */
LLSMTP_API int llsmtp_server_pending(const llsmtp_server *s);
/* The awaited decision's argument, in session memory until it is
 * delivered or cancelled: MAIL and RCPT, the mailbox as llsmtp_path's
 * mailbox ("local@domain" as written, without <> or route; empty for
 * <>); HELO/EHLO/LHLO, the domain; VRFY, EXPN, HELP and ETRN, their
 * argument. Empty for the others and when nothing is pending. */
LLSMTP_API llsmtp_span llsmtp_server_pending_arg(const llsmtp_server *s);

/* The peer's (the SMTP client's) address, for the relay policy (call
 * before feeding). ip is copied; NULL forgets it. */
LLSMTP_API void llsmtp_server_set_peer(llsmtp_server *s, const llsmtp_ip *ip);
/* The client authenticated by other means (AUTH does this itself). */
LLSMTP_API void llsmtp_server_set_authenticated(llsmtp_server *s, int yes);
/* The peer's address and port as the PROXY header gave them (or as set
 * with llsmtp_server_set_peer; port 0 then). Returns 1 when known. */
LLSMTP_API int llsmtp_server_peer(const llsmtp_server *s, llsmtp_ip *ip,
                                  uint16_t *port);

/* Whether the client has authenticated. */
LLSMTP_API int llsmtp_server_authenticated(const llsmtp_server *s);

/* TLS is now active: after LLSMTP_START_TLS (STARTTLS accepted, 220 written,
 * handshake done) the session forgets HELO/EHLO, AUTH and the transaction
 * as RFC 3207 4.2 requires and waits for a new EHLO; before
 * llsmtp_server_start it marks implicit TLS (port 465). Returns LLSMTP_OK
 * or LLSMTP_E_STATE. While a handshake is awaited, feed discards every
 * byte (CVE-2011-0411) and returns LLSMTP_START_TLS. */
LLSMTP_API int llsmtp_server_tls_started(llsmtp_server *s);
/* Whether TLS is active. */
LLSMTP_API int llsmtp_server_tls_active(const llsmtp_server *s);
/* During on_rcpt: the relay policy's verdict for this recipient (enum
 * llsmtp_relay_verdict: LOCAL or ALLOWED), or -1 without a policy. */
LLSMTP_API int llsmtp_server_rcpt_verdict(const llsmtp_server *s);

/* The bytes waiting to be written (n may be 0), valid until the next
 * call on the session. */
LLSMTP_API llsmtp_span llsmtp_server_output(const llsmtp_server *s);
/* n bytes of the output were written. With room made, LMTP replies that
 * waited for it are queued (on_lmtp_rcpt, on_reply may be called).
 * Returns LLSMTP_OK, LLSMTP_BLOCKED (more replies wait for room),
 * LLSMTP_CLOSE or a failure as feed would; llsmtp_server_wants() says
 * the same. */
LLSMTP_API int llsmtp_server_consume(llsmtp_server *s, size_t n);

/* What the session wants next (enum llsmtp_want bits): WRITE while
 * output waits; READ when feed would take bytes (first the ones an
 * earlier feed left unused, then new ones: no zero-byte feed is ever
 * needed); RESUME while a decision is deferred; TLS after the 220 to
 * STARTTLS; CLOSE once the session is over (after a failure, QUIT, a 421,
 * eof). 0 before llsmtp_server_start. A host loop: ask, write while
 * WRITE, close on CLOSE, hand over on TLS, wait for its decision on
 * RESUME, feed on READ; ask again. */
LLSMTP_API unsigned llsmtp_server_wants(const llsmtp_server *s);

/* For LLSMTP_CFG_SYNC_CHECK: everything read from the socket so far has
 * been fed (the host's input buffer ran dry). */
LLSMTP_API void llsmtp_server_input_drained(llsmtp_server *s);

/* Which RFC 5321 4.5.3.2 timer applies now (enum llsmtp_timeout); when
 * seconds is not NULL it receives the RFC's recommended minimum. */
LLSMTP_API int llsmtp_server_timeout(const llsmtp_server *s,
                                     unsigned *seconds);
/* The host's timer fired: queues "421 4.4.2 <hostname> Error: timeout
 * exceeded", aborts any message, returns LLSMTP_CLOSE. */
LLSMTP_API int llsmtp_server_timeout_expired(llsmtp_server *s);

/* The host ends the session itself (shutting down, a policy decision):
 * queues r, or "421 4.3.2 <hostname> Service shutting down" when r is
 * NULL, abandons any message in progress (on_data_abort(CLOSED)) and any
 * pending decision, and returns LLSMTP_CLOSE. r must be a 4xx or 5xx
 * reply (LLSMTP_E_REPLY otherwise). */
LLSMTP_API int llsmtp_server_shutdown(llsmtp_server *s, const llsmtp_reply *r);

/* Forgets everything but cfg and user, as if just initialised; what the
 * line buffer held (a half-received AUTH line) is wiped first. */
LLSMTP_API int llsmtp_server_reset(llsmtp_server *s);

/* The user pointer given to llsmtp_server_init, and a new one (for a
 * wrapper object that moves: the session itself must not move, as it
 * points into its own memory). */
LLSMTP_API void *llsmtp_server_user(const llsmtp_server *s);
LLSMTP_API void llsmtp_server_set_user(llsmtp_server *s, void *user);
/* The configuration the session borrows. */
LLSMTP_API const llsmtp_config *llsmtp_server_config(const llsmtp_server *s);
/* Name of the callback that failed ("on_rcpt"), or NULL. */
LLSMTP_API const char *llsmtp_server_failed_cb(const llsmtp_server *s);
/* Whether the client said EHLO (1), HELO (0) or nothing yet (-1). */
LLSMTP_API int llsmtp_server_helo_kind(const llsmtp_server *s);
/* Recipients accepted in the current transaction. */
LLSMTP_API size_t llsmtp_server_rcpt_count(const llsmtp_server *s);
/* Message bytes delivered so far in the current DATA. */
LLSMTP_API uint64_t llsmtp_server_data_size(const llsmtp_server *s);
/* BODY= declared at MAIL: 0 none, 7 for 7BIT, 8 for 8BITMIME, 9 for
 * BINARYMIME. */
LLSMTP_API int llsmtp_server_body_type(const llsmtp_server *s);
/* Whether the transaction declared SMTPUTF8 (RFC 6531) at MAIL. */
LLSMTP_API int llsmtp_server_smtputf8(const llsmtp_server *s);

/* ---- client building blocks (lib/client.c) ------------------------------ */

#define LLSMTP_REPLY_LINE_MAX 512 /* RFC 5321 4.5.3.1.5, CRLF included */

/* One line of a server reply. text excludes "ddd-"/"ddd " and the CRLF;
 * it is valid until the next call on the parser. */
typedef struct llsmtp_reply_line {
    int code;       /* 200..599 */
    int last;       /* 1 on the final line of the reply ("ddd ") */
    unsigned index; /* 0 for the first line of the reply */
    llsmtp_span text;
} llsmtp_reply_line;

/* An incremental, strict, bounded reply parser, opaque like the sessions
 * (the client session has its own; this one is for hosts that read
 * replies themselves). It lives in memory the host gives it. */
typedef struct llsmtp_reply_parser llsmtp_reply_parser;

#ifndef LLSMTP_NO_CLIENT
/* Bytes of memory a parser needs (about 540). */
LLSMTP_API size_t llsmtp_reply_parser_size(void);
/* Places a parser in mem (memlen >= llsmtp_reply_parser_size(), aligned
 * for any object, as malloc returns); calling it again on the same memory
 * starts over. A reply longer than max_lines lines (0: 100) is an error,
 * so a hostile server cannot make the client buffer without end (the
 * OpenSMTPD CVE-2020-8794 class). Returns the parser, or NULL when mem is
 * NULL, misaligned or too small. */
LLSMTP_API llsmtp_reply_parser *
llsmtp_reply_parser_init(void *mem, size_t memlen, unsigned max_lines);

/* Reads server bytes. Always sets *used. Returns LLSMTP_EVENT with *line
 * filled when a line is complete (*used says how far: feed the rest
 * again), LLSMTP_OK when all bytes were taken and no line is complete
 * yet, LLSMTP_E_INVAL for bad arguments, or LLSMTP_E_SYNTAX (sticky)
 * for anything that is not a reply: a code outside 200..599, a separator
 * other than SP or "-", a continuation code that differs, a line over
 * 512 octets, a bare LF, too many lines. Any split of the input gives
 * the same lines. */
LLSMTP_API int llsmtp_reply_parser_feed(llsmtp_reply_parser *p,
                                        const char *buf, size_t len,
                                        size_t *used, llsmtp_reply_line *line);
#endif /* LLSMTP_NO_CLIENT */

/* AUTH mechanisms a server offers (llsmtp_ehlo_keyword). */
enum llsmtp_mech {
    LLSMTP_MECH_PLAIN = 1u << 0,
    LLSMTP_MECH_LOGIN = 1u << 1,
    LLSMTP_MECH_CRAM_MD5 = 1u << 2,
    LLSMTP_MECH_OTHER = 1u << 3
};

/* What an EHLO reply offers. A value type whose layout never changes in
 * 1.x. */
typedef struct llsmtp_ehlo_info {
    unsigned extensions; /* enum llsmtp_ext bits */
    unsigned mechanisms; /* enum llsmtp_mech bits */
    uint64_t max_size;   /* SIZE value; 0 when none was given (or one
                            over 2^64 - 1: no limit known) */
} llsmtp_ehlo_info;

#ifndef LLSMTP_NO_CLIENT
/* Adds one EHLO keyword line (a reply line after the first) to *info:
 * PIPELINING, SIZE [n], 8BITMIME, ENHANCEDSTATUSCODES, STARTTLS, AUTH and
 * AUTH= mechanisms, CHUNKING, BINARYMIME, DSN, SMTPUTF8, ETRN, VRFY, HELP;
 * case-insensitive; unknown keywords are ignored. */
LLSMTP_API void llsmtp_ehlo_keyword(llsmtp_ehlo_info *info, llsmtp_span text);
#endif /* LLSMTP_NO_CLIENT */

/* Streaming encoder for an outgoing message body (RFC 5321 4.5.2): a
 * leading "." is doubled and every line ending (CRLF, bare LF, bare CR)
 * becomes CRLF, so nothing a host sends can end the message early or
 * smuggle a bare LF to the next hop. The client session has its own
 * (llsmtp_client_body); this one is for hosts that write a body
 * themselves, e.g. into a file. Its size never changes in 1.x. */
typedef struct llsmtp_dot_encoder {
    unsigned state; /* opaque; set by llsmtp_dot_init */
} llsmtp_dot_encoder;

#ifndef LLSMTP_NO_CLIENT
/* Starts a body (at the beginning of a line). */
LLSMTP_API void llsmtp_dot_init(llsmtp_dot_encoder *e);
/* Output bytes n input bytes can need at most. */
LLSMTP_API size_t llsmtp_dot_encoded_max(size_t n);
/* Encodes all of in[0..n) into out (cap >= llsmtp_dot_encoded_max(n)).
 * Returns the bytes written, or 0 with nothing consumed when cap is too
 * small (check n == 0 separately). */
LLSMTP_API size_t llsmtp_dot_encode(llsmtp_dot_encoder *e, const char *in,
                                    size_t n, char *out, size_t cap);
/* Ends the body: CRLF if the last line is open, then ".\r\n" (at most 5
 * bytes). Returns the bytes written, 0 when cap is too small. */
LLSMTP_API size_t llsmtp_dot_finish(llsmtp_dot_encoder *e, char *out,
                                    size_t cap);
#endif /* LLSMTP_NO_CLIENT */

/* ---- the client session (lib/client.c) --------------------------------
 *
 * The sending side, sans-IO, opaque like the server session and placed
 * in memory the host gives it (llsmtp_client_size, llsmtp_client_init).
 * The host's loop asks llsmtp_client_wants() and does what it says:
 *
 *   WRITE   write llsmtp_client_output(), then llsmtp_client_consume()
 *   EVENT   take the event: llsmtp_client_next_event(), and act on it
 *   RESUME  the host's move: after READY llsmtp_client_mail() or
 *           llsmtp_client_quit(); after BODY llsmtp_client_body() with
 *           the next body bytes, then llsmtp_client_body_end()
 *   TLS     do the TLS handshake, then llsmtp_client_tls_started()
 *   CLOSE   close the connection (after writing the output)
 *   READ    feed the server's bytes: first those an earlier feed left
 *           unused, then new ones from the socket (llsmtp_client_feed)
 *
 * Events are queued in the session: one server reply can give several
 * (the last RCPT's, the message's result, READY). While one is queued
 * wants() says EVENT (and WRITE when output waits) and nothing else, and
 * feed takes no bytes but returns the next event, so neither a zero-byte
 * feed nor a rule about when to call it is ever needed; events come out
 * in order whichever of feed and next_event hands them over.
 * A session runs in one thread at a time and does not move (it points
 * into its own memory); llsmtp_client_set_user re-points a wrapper that
 * does. Nothing is allocated; several sessions run in any threads. */

/* The session (opaque). */
typedef struct llsmtp_client llsmtp_client;

#define LLSMTP_CLIENT_RCPT_MAX 1000 /* recipients per message */

enum llsmtp_client_flag {
    LLSMTP_CLI_STARTTLS = 1u << 0,       /* use STARTTLS when offered */
    LLSMTP_CLI_REQUIRE_TLS = 1u << 1,    /* never go on in cleartext */
    LLSMTP_CLI_LMTP = 1u << 2,           /* RFC 2033: LHLO, per-rcpt results */
    LLSMTP_CLI_AUTH_CLEARTEXT = 1u << 3, /* allow AUTH without TLS */
    LLSMTP_CLI_NO_PIPELINING = 1u << 4   /* one command at a time */
};

/* Client configuration, read by llsmtp_client_size/init only (everything
 * it points to is copied: it may be discarded once the session is
 * placed). Fill with llsmtp_client_cfg_init(), then change fields. The
 * defaults are after each field. */
typedef struct llsmtp_client_cfg {
    llsmtp_abi abi;           /* set by llsmtp_client_cfg_init; never by
                                 hand */
    llsmtp_span helo;         /* our name for EHLO/HELO/LHLO: a domain or
                                 an address literal ("[192.0.2.1]"), at
                                 most 255 octets; "localhost" */
    unsigned flags;           /* enum llsmtp_client_flag; 0 */
    llsmtp_span user;         /* AUTH PLAIN/LOGIN when not empty (<= 255
                                 octets, no NUL); empty */
    llsmtp_span password;     /* (<= 255 octets, no NUL; set with user);
                                 empty */
    unsigned max_reply_lines; /* lines a server reply may have, >= 1; 100 */
    size_t output_size;       /* output queue octets: commands and body
                                 bytes, 1024..2^30; 4096 (a bulk sender
                                 writes fewer, larger pieces with 64 KiB) */
} llsmtp_client_cfg;

/* Fills *cfg with the defaults above and its tag (llsmtp_abi). Returns
 * LLSMTP_OK, or LLSMTP_E_VERSION when the library linked does not take
 * structs of this header (another major version, or a newer header than
 * the library); LLSMTP_E_INVAL when cfg is NULL. */
#define llsmtp_client_cfg_init(cfg)                                           \
    llsmtp_client_cfg_init_((cfg), LLSMTP_VERSION_NUM,                        \
                            sizeof(llsmtp_client_cfg))
#ifndef LLSMTP_NO_CLIENT
LLSMTP_API int llsmtp_client_cfg_init_(llsmtp_client_cfg *cfg,
                                       unsigned long version, size_t size);
#endif

enum llsmtp_client_event_type {
    LLSMTP_CEV_READY = 1, /* ready for llsmtp_client_mail or _quit */
    LLSMTP_CEV_TLS,       /* the 220 to STARTTLS: wants() says TLS */
    LLSMTP_CEV_RCPT,      /* one RCPT reply (rcpt = its index); only when
                             MAIL was accepted */
    LLSMTP_CEV_BODY,      /* 354: stream the body now */
    LLSMTP_CEV_MESSAGE,   /* the result for every accepted recipient
                             (rcpt = -1), or in LMTP for one (rcpt = index);
                             when MAIL failed, for all recipients */
    LLSMTP_CEV_FAIL,      /* the session cannot go on: write the output,
                             then close */
    LLSMTP_CEV_CLOSED     /* QUIT was answered: close */
};

/* An event; a value type whose layout never changes in 1.x. */
typedef struct llsmtp_client_event {
    int type;          /* enum llsmtp_client_event_type */
    int code;          /* the reply code, or the one chosen for a local
                          refusal; 0 for a malformed reply; 451 (4.5.0)
                          for a reply that fits no command (e.g. 250 to
                          DATA: only 354 starts the body) */
    int local;         /* 1 when decided here, without a server reply */
    long rcpt;         /* recipient index, or -1 */
    char enhanced[12]; /* the enhanced status code (RFC 3463, e.g.
                          "5.1.1") that began the reply's first line, or
                          "" when there was none, the server did not
                          offer ENHANCEDSTATUSCODES (RFC 2034) or its
                          class differs from the code's first digit; a
                          local event's own ("5.3.4"); NUL-terminated */
    llsmtp_span text;  /* the first reply line after the code and, when
                          enhanced is set, after it and its space; or the
                          local reason; valid until the next call */
} llsmtp_client_event;

enum llsmtp_msg_flag {
    LLSMTP_MSG_8BIT = 1u << 0,    /* the body has octets over 127 */
    LLSMTP_MSG_SMTPUTF8 = 1u << 1 /* the envelope or headers need UTF-8 */
};

/* One message. Fill with llsmtp_client_msg_init(), then change fields.
 * It and everything it points to must stay valid until its MESSAGE event
 * (the last one, in LMTP). Defaults after each field. */
typedef struct llsmtp_client_msg {
    llsmtp_abi abi;                 /* set by llsmtp_client_msg_init */
    llsmtp_span from;               /* mailbox without <>; empty: the null
                                       reverse-path <>; empty */
    const llsmtp_span *to;          /* mailboxes without <>; NULL */
    size_t nto;                     /* 1..LLSMTP_CLIENT_RCPT_MAX; 0 */
    uint64_t size;                  /* SIZE= (RFC 1870): the message's
                                       octets with CRLF line endings,
                                       before dot-stuffing; 0 when unknown
                                       (not sent); 0 */
    unsigned flags;                 /* enum llsmtp_msg_flag; 0 */
    llsmtp_span mail_params;        /* DSN "RET=HDRS ENVID=..." sent only
                                       when the server offers DSN; empty */
    const llsmtp_span *rcpt_params; /* per recipient "NOTIFY=... ORCPT=...",
                                       likewise; may be NULL; NULL */
} llsmtp_client_msg;

/* Fills *m with the defaults above and its tag. Returns as
 * llsmtp_client_cfg_init. */
#define llsmtp_client_msg_init(m)                                             \
    llsmtp_client_msg_init_((m), LLSMTP_VERSION_NUM, sizeof(llsmtp_client_msg))
#ifndef LLSMTP_NO_CLIENT
LLSMTP_API int llsmtp_client_msg_init_(llsmtp_client_msg *m,
                                       unsigned long version, size_t size);
#endif

#ifndef LLSMTP_NO_CLIENT
/* Checks a configuration: its tag, helo a domain or an address literal
 * of at most 255 octets, user and password at most 255 octets each,
 * without NUL, both set or neither, known flag bits, max_reply_lines and
 * output_size in range. Returns LLSMTP_OK, LLSMTP_E_VERSION (the tag is
 * missing, garbage, of another major version or of a newer header) or
 * LLSMTP_E_INVAL, with *why (when why is not NULL) set to a static
 * sentence naming the field and the problem ("helo: ..."); *why is NULL
 * on success. May be called anywhere. */
LLSMTP_API int llsmtp_client_cfg_check(const llsmtp_client_cfg *cfg,
                                       const char **why);

/* Bytes of memory a session with this configuration needs, or 0 when the
 * configuration is refused (llsmtp_client_cfg_check says why). */
LLSMTP_API size_t llsmtp_client_size(const llsmtp_client_cfg *cfg);

/* Places a session in mem (memlen >= llsmtp_client_size(cfg), aligned
 * for any object, as malloc returns) and copies what it needs of cfg;
 * the greeting is the first thing to feed. Returns the session, or NULL
 * on a bad argument: mem NULL or not so aligned, memlen too small, a
 * configuration llsmtp_client_cfg_check refuses. Placing a session again
 * in the same memory starts a new one. */
LLSMTP_API llsmtp_client *llsmtp_client_init(void *mem, size_t memlen,
                                             const llsmtp_client_cfg *cfg,
                                             void *user);

/* The user pointer given to llsmtp_client_init, and a new one (for a
 * wrapper object that moves: the session itself must not). */
LLSMTP_API void *llsmtp_client_user(const llsmtp_client *c);
LLSMTP_API void llsmtp_client_set_user(llsmtp_client *c, void *user);

/* What the session wants next (enum llsmtp_want bits), as described at
 * the top of this section: WRITE while output waits; EVENT while an
 * event is queued (then nothing else but WRITE); READ while a server
 * reply is awaited; RESUME while READY or BODY waits for the host's call;
 * TLS after the 220 to STARTTLS; CLOSE after FAIL or CLOSED (or a body
 * refused with LLSMTP_E_SYNTAX). 0 for NULL. */
LLSMTP_API unsigned llsmtp_client_wants(const llsmtp_client *c);

/* Reads server bytes. Always sets *used. Returns LLSMTP_EVENT with *ev
 * filled (*used says how far it read: feed the rest again), or LLSMTP_OK
 * when all was read and nothing happened. With an event queued it takes
 * no bytes and returns that event. Never fails on server input: a
 * malformed reply is a FAIL event with code 0, a reply that answers no
 * command written so far (write the output before feeding what comes
 * back) or that no server may give (2xx/3xx but 354 to DATA) a FAIL
 * event with 451: the session is over, close without QUIT; bytes after
 * the end are taken and ignored. The session can tell such a reply only
 * by what it has written when the reply is fed: a host that reads
 * "354 ...\r\n554 ...\r\n" in one read and feeds it after writing the
 * whole message has the 554 taken as the message's reply: the session
 * never sees bytes the host holds. LLSMTP_E_INVAL for bad arguments. */
LLSMTP_API int llsmtp_client_feed(llsmtp_client *c, const char *buf,
                                  size_t len, size_t *used,
                                  llsmtp_client_event *ev);
/* The next queued event: LLSMTP_EVENT with *ev filled, or LLSMTP_OK when
 * none is queued; LLSMTP_E_INVAL for bad arguments. */
LLSMTP_API int llsmtp_client_next_event(llsmtp_client *c,
                                        llsmtp_client_event *ev);

/* Bytes to write to the server (n may be 0), valid until the next call
 * on the session; and how many were written (more is taken as all).
 * Written bytes that held AUTH credentials are wiped. */
LLSMTP_API llsmtp_span llsmtp_client_output(const llsmtp_client *c);
LLSMTP_API void llsmtp_client_consume(llsmtp_client *c, size_t n);

/* Starts a message (after READY). Sends MAIL, the RCPTs and DATA, in one
 * write when the server offers PIPELINING (RFC 2920). A message the
 * server cannot take as it is - over its SIZE, 8-bit without 8BITMIME,
 * SMTPUTF8 not offered - gets a local MESSAGE event (then READY) and
 * nothing is sent. Returns LLSMTP_OK, LLSMTP_E_VERSION (m not set up by
 * llsmtp_client_msg_init of a header this library takes),
 * LLSMTP_E_STATE (not READY, or an event still queued), LLSMTP_E_RANGE
 * (no recipients or too many) or LLSMTP_E_SYNTAX (a mailbox that is not
 * an RFC 5321 4.1.2 Mailbox - checked with llsmtp_path_parse, so a
 * quoted local part such as "x> y"@far.test is fine while CR, LF, NUL
 * or an unquoted "<", ">" or space is not - or over 254 octets; a
 * parameter string with a control character, "<" or ">", or too long). */
LLSMTP_API int llsmtp_client_mail(llsmtp_client *c,
                                  const llsmtp_client_msg *m);
/* Body bytes (after BODY), into the session's own output behind the
 * commands, so nothing can be written out of order: dot-stuffed and
 * every line ending made CRLF (as llsmtp_dot_encode), taking as much as
 * fits. Always sets *used. Returns LLSMTP_OK (*used == n), LLSMTP_BLOCKED
 * (*used < n: write the output, then call again with in + *used),
 * LLSMTP_E_STATE (not in the body), LLSMTP_E_INVAL, or LLSMTP_E_SYNTAX
 * for an octet over 127 in a message not declared LLSMTP_MSG_8BIT: the
 * session then fails (nothing of this call is queued, no end of data
 * will ever be sent; wants() says CLOSE). */
LLSMTP_API int llsmtp_client_body(llsmtp_client *c, const char *in, size_t n,
                                  size_t *used);
/* Ends the body: queues the last CRLF if the last line is open, and ".".
 * Returns LLSMTP_OK, LLSMTP_BLOCKED (no room: write the output, then
 * call again), LLSMTP_E_STATE or LLSMTP_E_INVAL. */
LLSMTP_API int llsmtp_client_body_end(llsmtp_client *c);
/* Sends QUIT (after READY). Returns LLSMTP_OK, LLSMTP_E_STATE (not READY,
 * or an event still queued) or LLSMTP_E_INVAL. */
LLSMTP_API int llsmtp_client_quit(llsmtp_client *c);
/* The TLS handshake succeeded: EHLO is sent again (RFC 3207 4.2: all
 * knowledge from before TLS is discarded). Returns LLSMTP_OK,
 * LLSMTP_E_STATE (no TLS was asked for) or LLSMTP_E_INVAL. */
LLSMTP_API int llsmtp_client_tls_started(llsmtp_client *c);
/* What the server offers (after READY); NULL for NULL. */
LLSMTP_API const llsmtp_ehlo_info *llsmtp_client_caps(const llsmtp_client *c);
/* Seconds the current wait may last (RFC 5321 4.5.3.2): 300 for the
 * greeting, EHLO, MAIL and RCPT, 120 for DATA, 180 per body write, 600
 * after the final dot; 0 when nothing is awaited. */
LLSMTP_API unsigned llsmtp_client_timeout(const llsmtp_client *c);
#endif /* LLSMTP_NO_CLIENT */

/* ---- IP addresses as text (lib/mx.c) ------------------------------------ */

/* Formats an address as text ("192.0.2.1", "2001:db8::1", RFC 5952
 * compressed) into buf. Returns the length (NUL not counted), or 0 when
 * buf is too small (48 bytes always suffice) or ip is not 4 or 6. */
LLSMTP_API size_t llsmtp_ip_format(const llsmtp_ip *ip, char *buf,
                                   size_t buflen);

/* Parses IPv4 or IPv6 text (no brackets) into *ip. LLSMTP_OK or
 * LLSMTP_E_SYNTAX. */
LLSMTP_API int llsmtp_ip_parse(const char *p, size_t n, llsmtp_ip *ip);

/* ---- paths and domains (lib/path.c) ------------------------------------- */

/* Parses a Path or "<>" at the start of p[0..n): "<" [route ":"] mailbox
 * ">". On success returns LLSMTP_OK, fills *out and sets *end to the
 * offset just past ">". On failure returns LLSMTP_E_SYNTAX (or E_RANGE for
 * a domain or label too long) and sets *end to the offset of the offending
 * byte. Pure function; may be called anywhere. */
LLSMTP_API int llsmtp_path_parse(const char *p, size_t n, unsigned opts,
                                 llsmtp_path *out, size_t *end);

/* Validates a whole Domain (RFC 5321 4.1.2 sub-domain rules, labels <= 63,
 * total <= 255). Returns LLSMTP_OK or LLSMTP_E_SYNTAX / LLSMTP_E_RANGE. */
LLSMTP_API int llsmtp_domain_check(const char *p, size_t n, unsigned opts);

/* Parses dotted-quad IPv4 text (exactly, no leading/trailing bytes) into
 * out[4]. Returns LLSMTP_OK or LLSMTP_E_SYNTAX. */
LLSMTP_API int llsmtp_ipv4_parse(const char *p, size_t n, uint8_t out[4]);

/* Parses RFC 4291 IPv6 text (with "::" and a trailing dotted quad) into
 * out[16]. Returns LLSMTP_OK or LLSMTP_E_SYNTAX. */
LLSMTP_API int llsmtp_ipv6_parse(const char *p, size_t n, uint8_t out[16]);

/* ---- ESMTP parameters, xtext, DSN values (lib/path.c) ------------------- */

/* Parses "KEY[=VALUE] KEY[=VALUE] ..." (SP separated, the text after a
 * path). Returns LLSMTP_OK, LLSMTP_E_SYNTAX (bad keyword or value, *end at
 * the offending byte) or LLSMTP_E_RANGE (more than LLSMTP_PARAMS_MAX). */
LLSMTP_API int llsmtp_params_parse(const char *p, size_t n, unsigned opts,
                                   llsmtp_params *out, size_t *end);

/* Decodes RFC 3461 xtext ("+2B" for "+"; printable ASCII otherwise, no
 * "=" or raw "+"). out may be NULL (and cap 0) to validate only. Returns
 * LLSMTP_OK, LLSMTP_E_SYNTAX or LLSMTP_E_BUFFER; *outlen (may be NULL)
 * gets the decoded length. */
LLSMTP_API int llsmtp_xtext_decode(const char *p, size_t n, char *out,
                                   size_t cap, size_t *outlen);

/* DSN (RFC 3461) NOTIFY= flags. */
enum llsmtp_notify {
    LLSMTP_NOTIFY_NEVER = 1u << 0,
    LLSMTP_NOTIFY_SUCCESS = 1u << 1,
    LLSMTP_NOTIFY_FAILURE = 1u << 2,
    LLSMTP_NOTIFY_DELAY = 1u << 3
};

/* Parses a NOTIFY value: "NEVER" alone, or a comma list of SUCCESS,
 * FAILURE, DELAY (each at most once), case-insensitive. Returns LLSMTP_OK
 * with *flags, or LLSMTP_E_SYNTAX. */
LLSMTP_API int llsmtp_dsn_notify_parse(const char *p, size_t n,
                                       unsigned *flags);

/* Splits an ORCPT value "addr-type;xtext" (RFC 3461 4.2): addr-type is an
 * atom ("rfc822", "utf-8"), the rest valid xtext (decode it with
 * llsmtp_xtext_decode). Returns LLSMTP_OK or LLSMTP_E_SYNTAX. */
LLSMTP_API int llsmtp_dsn_orcpt_parse(const char *p, size_t n,
                                      llsmtp_span *addr_type,
                                      llsmtp_span *xtext);

/* Finds a parameter by keyword, ASCII case-insensitively. Returns it or
 * NULL. */
LLSMTP_API const llsmtp_param *llsmtp_params_get(const llsmtp_params *ps,
                                                 const char *key);

/* ---- Base64 (lib/base64.c), RFC 4648 ------------------------------------ */

/* Encoded length of n bytes (with padding). */
LLSMTP_API size_t llsmtp_b64_encoded_len(size_t n);
/* Largest decoded length of n Base64 characters. */
LLSMTP_API size_t llsmtp_b64_decoded_max(size_t n);

/* Encodes n bytes into out (cap >= llsmtp_b64_encoded_len(n)); no NUL is
 * written. Returns LLSMTP_OK or LLSMTP_E_BUFFER. */
LLSMTP_API int llsmtp_b64_encode(const void *in, size_t n, char *out,
                                 size_t cap, size_t *outlen);
/* Decodes strictly: length a multiple of 4, '=' only as the padding the
 * length needs, unused bits zero, nothing outside the alphabet (no
 * whitespace). out may equal in. Returns LLSMTP_OK, LLSMTP_E_SYNTAX or
 * LLSMTP_E_BUFFER. */
LLSMTP_API int llsmtp_b64_decode(const char *in, size_t n, void *out,
                                 size_t cap, size_t *outlen);

/* ---- SASL (lib/sasl.c) --------------------------------------------------- */

/* Splits a decoded PLAIN message (RFC 4616: authzid NUL authcid NUL
 * passwd). Returns LLSMTP_OK or LLSMTP_E_SYNTAX (not two NULs, an empty
 * user or password, CR or LF inside). */
LLSMTP_API int llsmtp_sasl_plain_parse(const char *p, size_t n,
                                       llsmtp_auth *out);

/* The AUTH LOGIN prompts: Base64 of "Username:" and "Password:". */
LLSMTP_API_DATA const char llsmtp_sasl_login_user_prompt[13];
LLSMTP_API_DATA const char llsmtp_sasl_login_pass_prompt[13];

/* ---- relay policy functions (lib/relay.c) ------------------------------- */

#ifndef LLSMTP_NO_RELAY
/* Parses "192.168.0.0/16", "10.1.2.3" (a /32), "2001:db8::/32",
 * "::ffff:10.0.0.0/104". Returns LLSMTP_OK, LLSMTP_E_SYNTAX (not an
 * address), LLSMTP_E_RANGE (prefix too long) or LLSMTP_E_HOSTBITS
 * ("10.1.2.3/8": did you mean 10.0.0.0/8?). */
LLSMTP_API int llsmtp_cidr_parse(const char *p, size_t n, llsmtp_cidr *out);

/* Whether ip lies in net (IPv4-mapped addresses count as IPv4). */
LLSMTP_API int llsmtp_cidr_match(const llsmtp_cidr *net, const llsmtp_ip *ip);
#endif

#ifndef LLSMTP_NO_RELAY
/* Fills *p: no domains, no networks, both *_may_relay on, 550 5.7.1;
 * and its tag (llsmtp_abi). Returns LLSMTP_OK or LLSMTP_E_VERSION (see
 * llsmtp_config_init). */
#define llsmtp_relay_policy_init(p)                                           \
    llsmtp_relay_policy_init_((p), LLSMTP_VERSION_NUM,                        \
                              sizeof(llsmtp_relay_policy))
LLSMTP_API int llsmtp_relay_policy_init_(llsmtp_relay_policy *p,
                                         unsigned long version, size_t size);

/* Judges a recipient (a path from llsmtp_path_parse) for a client (ip
 * may be NULL when unknown; authenticated: AUTH succeeded). The real
 * final domain is judged: a source route is ignored (RFC 5321 App. C),
 * and from untrusted, unauthenticated clients the classic relay tricks
 * are refused even when the right-most domain is local: "%" hacks, "!"
 * bang paths, quoted local parts holding "@", "%" or "!", and address
 * literals that are not one of own_addrs. Returns an enum
 * llsmtp_relay_verdict, or LLSMTP_E_INVAL. Pure function. */
LLSMTP_API int llsmtp_relay_check(const llsmtp_relay_policy *p,
                                  const llsmtp_ip *ip, int authenticated,
                                  const llsmtp_path *rcpt);
#endif /* LLSMTP_NO_RELAY */

/* ---- MX selection (lib/mx.c) -------------------------------------------- */

#define LLSMTP_NAME_MAX 253   /* a domain name in text, RFC 1035 2.3.4 */
#define LLSMTP_MX_ADDRS_MAX 8 /* addresses kept per mail exchanger */

/* One mail exchanger (RFC 5321 5.1). host is lower-case text without a
 * trailing dot, NUL-terminated; "" is the root "." of a null MX. */
typedef struct llsmtp_mx {
    uint16_t pref;
    char host[LLSMTP_NAME_MAX + 1];
    size_t naddrs;
    llsmtp_ip addrs[LLSMTP_MX_ADDRS_MAX];
} llsmtp_mx;

/* What llsmtp_mx_order() concluded. */
enum llsmtp_mx_result {
    LLSMTP_MX_OK = 0,       /* v[0..*n) are the targets, in delivery order */
    LLSMTP_MX_IMPLICIT = 1, /* no MX records: the domain itself, pref 0 */
    LLSMTP_MX_NULL = 2,     /* RFC 7505 null MX: the domain takes no mail */
    LLSMTP_MX_LOOP = 3,     /* this host is the best MX: mail would loop */
    LLSMTP_MX_BAD = 4       /* a "." record mixed with others (RFC 7505 3) */
};

/* How this host knows itself, and the randomness for equal preferences.
 * Fill with llsmtp_mx_opts_init(), then change fields. */
typedef struct llsmtp_mx_opts {
    llsmtp_abi abi; /* set by llsmtp_mx_opts_init; never by hand */
    const char *const *local_names; /* NUL-terminated names, or NULL */
    size_t nlocal_names;
    const llsmtp_ip *local_addrs; /* or NULL */
    size_t nlocal_addrs;
    uint64_t seed; /* shuffles records of equal preference; any value */
} llsmtp_mx_opts;

#ifndef LLSMTP_NO_MX
/* Fills *o: no local names or addresses, seed 0; and its tag (llsmtp_abi).
 * Returns LLSMTP_OK or LLSMTP_E_VERSION (see llsmtp_config_init). */
#define llsmtp_mx_opts_init(o)                                                \
    llsmtp_mx_opts_init_((o), LLSMTP_VERSION_NUM, sizeof(llsmtp_mx_opts))
LLSMTP_API int llsmtp_mx_opts_init_(llsmtp_mx_opts *o, unsigned long version,
                                    size_t size);

/* Orders the *n MX records in v (capacity cap) for delivery to domain
 * (RFC 5321 5.1): duplicate hosts merged (lowest preference, addresses
 * joined), ascending preference, equal preferences in an order drawn from
 * opts->seed, this host and every record not better than it removed. With
 * no records, v[0] becomes the domain itself (needs cap >= 1). Updates *n.
 * Returns an enum llsmtp_mx_result, LLSMTP_E_INVAL, or LLSMTP_E_VERSION
 * (opts not from llsmtp_mx_opts_init). opts may be NULL. Pure function:
 * no I/O, no allocation. */
LLSMTP_API int llsmtp_mx_order(const char *domain, size_t domain_len,
                               llsmtp_mx *v, size_t *n, size_t cap,
                               const llsmtp_mx_opts *opts);

/* The reply a relay gives a recipient whose domain got this result:
 * NULL: 556 5.1.10 (RFC 7505 4.2), LOOP: 554 5.4.6, BAD: 451 4.4.4.
 * Returns LLSMTP_OK, or LLSMTP_E_INVAL for OK/IMPLICIT. */
LLSMTP_API int llsmtp_mx_reply(int result, llsmtp_reply *r);

/* A relay host as MTAs write it: "host", "host:port" (look up MX for
 * host), "[host]", "[host]:port", "[192.0.2.1]", "[2001:db8::1]:587" or
 * "[IPv6:2001:db8::1]" (connect to exactly this, no MX lookup). */
typedef struct llsmtp_relayhost {
    char host[LLSMTP_NAME_MAX + 1]; /* name or address text, no brackets */
    uint16_t port;                  /* 0: not given (use 25) */
    int no_mx;                      /* bracketed: skip the MX lookup */
    llsmtp_ip ip;                   /* family 0 unless host is an address */
} llsmtp_relayhost;

/* Parses a relay host. Returns LLSMTP_OK, LLSMTP_E_SYNTAX (bad host, a
 * missing "]", an unbracketed IPv6 address) or LLSMTP_E_RANGE (port not
 * in 1..65535); *err_at (may be NULL) gets the offending offset. */
LLSMTP_API int llsmtp_relayhost_parse(const char *p, size_t n,
                                      llsmtp_relayhost *out, size_t *err_at);
#endif /* LLSMTP_NO_MX */

/* ---- DNS wire format (lib/dns.c), RFC 1035 ----------------------------- */

enum llsmtp_dns_type {
    LLSMTP_DNS_A = 1,
    LLSMTP_DNS_CNAME = 5,
    LLSMTP_DNS_MX = 15,
    LLSMTP_DNS_AAAA = 28
};

/* What a response says (llsmtp_dns_parse). */
enum llsmtp_dns_status {
    LLSMTP_DNS_NOERROR = 0,   /* records (possibly none: NODATA) */
    LLSMTP_DNS_NXDOMAIN = 1,  /* RCODE 3: no such domain */
    LLSMTP_DNS_SERVFAIL = 2,  /* RCODE 2: try later */
    LLSMTP_DNS_TRUNCATED = 3, /* TC set: ask again over TCP */
    LLSMTP_DNS_MISMATCH = 4,  /* not the answer to our query (id, question):
                                 ignore it and keep waiting (anti-spoofing) */
    LLSMTP_DNS_REFUSED = 5,   /* any other RCODE (REFUSED, FORMERR, ...) */
    LLSMTP_DNS_PARTIAL = 6    /* llsmtp_dns_mx only: more MX records than
                                 room; the best preferences were kept */
};

/* A resource record from the answer or additional section. Names are
 * lower-case text without the trailing dot. */
typedef struct llsmtp_dns_rr {
    uint16_t type; /* enum llsmtp_dns_type (others are skipped) */
    uint16_t pref; /* MX preference */
    uint32_t ttl;
    int in_answer; /* 1: answer section, 0: additional (glue) */
    char owner[LLSMTP_NAME_MAX + 1];
    char target[LLSMTP_NAME_MAX + 1]; /* MX exchange or CNAME target */
    llsmtp_ip ip;                     /* A / AAAA */
} llsmtp_dns_rr;

#ifndef LLSMTP_NO_DNS
/* Writes a recursive (RD) query for name/qtype with the given id into
 * buf. tcp: prefix the 2-byte length (RFC 1035 4.2.2). *len gets the
 * size. Returns LLSMTP_OK, LLSMTP_E_SYNTAX (bad name), LLSMTP_E_BUFFER. */
LLSMTP_API int llsmtp_dns_query(uint16_t id, const char *name, size_t name_len,
                                uint16_t qtype, int tcp, uint8_t *buf,
                                size_t cap, size_t *len);

/* Parses a response to the query (id, name, qtype); tcp: the packet has
 * the 2-byte length prefix. Compressed names are followed with loop and
 * bounds checks (every pointer must point backwards; names <= 255 octets,
 * labels <= 63). A, AAAA, MX and CNAME records of the answer and
 * additional sections go to rrs[0..cap); *nrr gets how many were stored
 * and *total (may be NULL) how many there were. Returns an enum
 * llsmtp_dns_status, or LLSMTP_E_SYNTAX for a malformed packet. Never
 * reads outside pkt[0..len). */
LLSMTP_API int llsmtp_dns_parse(const uint8_t *pkt, size_t len, int tcp,
                                uint16_t id, const char *name, size_t name_len,
                                uint16_t qtype, llsmtp_dns_rr *rrs, size_t cap,
                                size_t *nrr, size_t *total);

/* From parsed records, the MX set of name: follows a CNAME chain from
 * name (at most 8 links), takes its MX records and attaches A/AAAA
 * addresses found for each exchange (glue). *n gets the count (at most
 * cap). With more MX records than cap, the cap with the lowest
 * preferences are kept (of equals, the first in the answer) and
 * LLSMTP_DNS_PARTIAL says some were dropped; v is not sorted (use
 * llsmtp_mx_order). Returns LLSMTP_OK, LLSMTP_DNS_PARTIAL, or
 * LLSMTP_E_RANGE (CNAME chain too long or looping). */
LLSMTP_API int llsmtp_dns_mx(const llsmtp_dns_rr *rrs, size_t nrr,
                             const char *name, size_t name_len, llsmtp_mx *v,
                             size_t cap, size_t *n);

/* Adds the A/AAAA addresses owned by host (or by a CNAME chain from it)
 * in rrs to mx->addrs (duplicates skipped, at most LLSMTP_MX_ADDRS_MAX).
 * Returns the number of addresses added. */
LLSMTP_API size_t llsmtp_dns_addrs(const llsmtp_dns_rr *rrs, size_t nrr,
                                   llsmtp_mx *mx);
#endif /* LLSMTP_NO_DNS */

#ifdef __cplusplus
}
#endif
#endif /* LLSMTP_H */

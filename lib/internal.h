/* SPDX-License-Identifier: MIT
 *
 * internal.h - what the modules share and the public header does not say:
 * ASCII helpers (no locale ever touches protocol bytes), the internal
 * symbol convention (llsmtp__name, static in the amalgamation) and the
 * reply writer the session uses. Never installed.
 */
#ifndef LLSMTP_INTERNAL_H
#define LLSMTP_INTERNAL_H

#include "llsmtp.h"

#include <stddef.h>
#include <string.h>

/* In the amalgamation internal symbols are static (nothing leaks into the
 * host's namespace), unless the test suite asks to see them. */
#if defined(LLSMTP_AMALGAMATION) && !defined(LLSMTP_TEST_INTERNALS)
#define LLSMTP_INTERNAL static
#else
#define LLSMTP_INTERNAL
#endif

/* Public data definitions: static in a single-file LLSMTP_STATIC build. */
#ifdef LLSMTP_STATIC
#define LLSMTP_DATA_DEF static
#else
#define LLSMTP_DATA_DEF
#endif

/* ---- versioned structs (llsmtp_abi) ------------------------------------ */

/* Where a struct's 1.0 members end: the least a 1.x host's struct has. */
#define LLSMTP__END(type, member)                                             \
    (offsetof(type, member) + sizeof(((type *)0)->member))

/* Whether this library takes a struct of size bytes, as the host's header
 * had it: the same major version, a header not newer than this library,
 * and a size from the end of the 1.0 members (min) to this library's own
 * (own). A smaller struct than ours comes from an older 1.x header: the
 * members it lacks were appended later, and the library reads each of
 * them only after checking abi.size, taking its default when it is
 * missing (1.0 has no such member yet). The struct is always read in
 * place, never past abi.size. */
static inline int
llsmtp__abi_fits(unsigned long version, size_t size, size_t min, size_t own)
{
    return (version >> 16) == LLSMTP_VERSION_MAJOR &&
           version <= LLSMTP_VERSION_NUM && size >= min && size <= own;
}

/* An init refusing a struct (from a header this library does not take):
 * only its tag is written, zeroed (the struct may be smaller than ours),
 * and every function refuses it. */
static inline int
llsmtp__abi_refuse(llsmtp_abi *a)
{
    memset(a, 0, sizeof *a);
    return LLSMTP_E_VERSION;
}

/* Tags a struct at its init (aux: llsmtp_config's callback table, else
 * all 0): LLSMTP_OK, or LLSMTP_E_VERSION and a zero tag, which every
 * function refuses. */
static inline int
llsmtp__abi_tag(llsmtp_abi *a, unsigned long version, size_t size, size_t min,
                size_t own, size_t aux, size_t aux_min, size_t aux_own)
{
    if (!llsmtp__abi_fits(version, size, min, own) ||
        !llsmtp__abi_fits(version, aux, aux_min, aux_own))
        return llsmtp__abi_refuse(a);
    a->version = (uint32_t)version;
    a->size = (uint32_t)size;
    a->aux_size = (uint32_t)aux;
    return LLSMTP_OK;
}

/* Whether a struct carries a tag this library takes. */
static inline int
llsmtp__abi_ok(const llsmtp_abi *a, size_t min, size_t own, size_t aux_min,
               size_t aux_own)
{
    return llsmtp__abi_fits(a->version, a->size, min, own) &&
           llsmtp__abi_fits(a->version, a->aux_size, aux_min, aux_own);
}

/* ---- ASCII, locale-free --------------------------------------------- */

/* Credentials never outlive their use (a volatile write the compiler
 * cannot drop). */
static inline void
llsmtp__wipe(void *p, size_t n)
{
    volatile unsigned char *v = (volatile unsigned char *)p;
    while (n--)
        *v++ = 0;
}

static inline int
llsmtp__is_alpha(unsigned char c)
{
    return (unsigned char)((c | 0x20) - 'a') < 26;
}
static inline int
llsmtp__is_digit(unsigned char c)
{
    return (unsigned char)(c - '0') < 10;
}
static inline int
llsmtp__is_alnum(unsigned char c)
{
    return llsmtp__is_alpha(c) || llsmtp__is_digit(c);
}
static inline int
llsmtp__is_xdigit(unsigned char c)
{
    return llsmtp__is_digit(c) || (unsigned char)((c | 0x20) - 'a') < 6;
}
static inline unsigned char
llsmtp__lower(unsigned char c)
{
    return (unsigned char)((unsigned char)(c - 'A') < 26 ? c | 0x20 : c);
}
/* Compares n bytes of a with the lower-case ASCII literal b. */
static inline int
llsmtp__ieq(const char *a, const char *b, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (llsmtp__lower((unsigned char)a[i]) != (unsigned char)b[i])
            return 0;
    return 1;
}
/* ASCII case-insensitive equality of two spans. */
static inline int
llsmtp__iequal(const char *a, size_t an, const char *b, size_t bn)
{
    size_t i;
    if (an != bn)
        return 0;
    for (i = 0; i < an; i++)
        if (llsmtp__lower((unsigned char)a[i]) !=
            llsmtp__lower((unsigned char)b[i]))
            return 0;
    return 1;
}
/* Domain names are equal ignoring case and one trailing dot. */
static inline int
llsmtp__name_eq(const char *a, size_t an, const char *b, size_t bn)
{
    if (an && a[an - 1] == '.')
        an--;
    if (bn && b[bn - 1] == '.')
        bn--;
    return llsmtp__iequal(a, an, b, bn);
}
/* RFC 5322 atext (RFC 5321 4.1.2 Atom). */
static inline int
llsmtp__is_atext(unsigned char c)
{
    if (llsmtp__is_alnum(c))
        return 1;
    switch (c) {
    /* clang-format off */
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '/': case '=': case '?': case '^': case '_':
    case '`': case '{': case '|': case '}': case '~':
        /* clang-format on */
        return 1;
    default:
        return 0;
    }
}

/* Length of the valid UTF-8 sequence starting at p[0] (RFC 3629: no
 * overlongs, no surrogates, <= U+10FFFF), or 0 if invalid/truncated. */
LLSMTP_INTERNAL size_t llsmtp__utf8_len(const unsigned char *p, size_t n);

/* A host's own name as it goes into a greeting or an EHLO line (RFC 5321
 * 4.1.1.1, 2.3.5): a domain or an address literal ("[192.0.2.1]",
 * "[IPv6:2001:db8::1]"), so nothing that could end or split a line. */
LLSMTP_INTERNAL int llsmtp__host_name_ok(const char *h, size_t n);

/* A SASL user name or password: non-empty, no NUL, CR or LF. */
LLSMTP_INTERNAL int llsmtp__sasl_name_ok(const char *p, size_t n);

/* llsmtp_path_parse's general parser, every path the grammar has, which
 * the common path's fast one falls back to (tests compare the two). */
LLSMTP_INTERNAL int llsmtp__path_parse_general(const char *p, size_t n,
                                               unsigned opts, llsmtp_path *out,
                                               size_t *end);
/* llsmtp_path_parse for a path in a command line: p[n] is readable and a
 * space, tab, CR or LF (the argument's end), which spares the fast
 * parser a bound check an octet. p, out and end are not NULL. */
LLSMTP_INTERNAL int llsmtp__path_parse_line(const char *p, size_t n,
                                            unsigned opts, llsmtp_path *out,
                                            size_t *end);

#ifndef LLSMTP_NO_RELAY
/* Whether domain d[0..dn) matches an entry of a relay policy's domain
 * list (NULL entries skipped): as written first, the general match
 * (case, trailing dots, ".parent") when it is not; the second, the
 * general match alone, is the first's reference in tests. */
LLSMTP_INTERNAL int llsmtp__relay_domain_in(const char *d, size_t dn,
                                            const char *const *list,
                                            size_t nlist);
#if !defined(LLSMTP_AMALGAMATION) || defined(LLSMTP_TEST_INTERNALS)
LLSMTP_INTERNAL int llsmtp__relay_domain_in_general(const char *d, size_t dn,
                                                    const char *const *list,
                                                    size_t nlist);
#endif
#endif

/* ---- replies ---------------------------------------------------------- */

/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its CRLF. */
#define LLSMTP__REPLY_LINE_MAX 512

/* The library's own text for a code, used when a host gives none. */
LLSMTP_INTERNAL const char *llsmtp__reply_generic_text(int code);

/* Writes a reply into out[0..cap): code, enhanced (NULL or "" for none),
 * the concatenation of parts as text, sanitised and folded. Returns bytes
 * written, or 0 when it does not fit. A reply of one line of plain text
 * (printable ASCII) goes the fast way (llsmtp__reply_write_plain), any
 * other the general way; both write the same octets (tests/test_reply.c
 * compares them). */
LLSMTP_INTERNAL size_t llsmtp__reply_write(char *out, size_t cap, int code,
                                           const char *enhanced,
                                           const llsmtp_span *parts,
                                           size_t nparts);
/* The general way: octet by octet, sanitising and folding. */
LLSMTP_INTERNAL size_t llsmtp__reply_write_general(char *out, size_t cap,
                                                   int code,
                                                   const char *enhanced,
                                                   const llsmtp_span *parts,
                                                   size_t nparts);
/* The fast way, for parts the caller knows are printable ASCII (0x20-
 * 0x7e: the library's own texts, a path the parser took without UTF-8)
 * and enh of elen octets (NULL, 0 for none): 0 unless the text fits one
 * line and the reply fits cap, and then the caller goes the general
 * way. */
LLSMTP_INTERNAL size_t llsmtp__reply_write_plain(char *out, size_t cap,
                                                 int code, const char *enh,
                                                 size_t elen,
                                                 const llsmtp_span *parts,
                                                 size_t nparts);

/* The text of a host's reply as parts[0..3): its queue id and a space
 * (when it has one, and id_any is set or the code is 2xx), then its text,
 * or the code's generic text when it has none or is a default reply.
 * Returns the number of parts. llsmtp_reply_format and the session's
 * replies both render through it. */
LLSMTP_INTERNAL size_t llsmtp__reply_parts(const llsmtp_reply *r, int id_any,
                                           llsmtp_span *parts);

/* Validates an enhanced status code against a reply code. */
LLSMTP_INTERNAL int llsmtp__enhanced_check(int code, const char *e, size_t n);

/* ---- the PROXY protocol header (proxy.c) ------------------------------ */

#define LLSMTP__PROXY_V1_MAX 107  /* the longest v1 line, CRLF included */
#define LLSMTP__PROXY_V2_HDR 16   /* v2: signature, command, family, length */
#define LLSMTP__PROXY_V2_ADDR 216 /* the largest v2 address block (UNIX) */

/* Parses a whole PROXY header gathered from the start of a connection:
 * a v1 line with its CRLF, or v2's 16 fixed bytes and its address block
 * (at most LLSMTP__PROXY_V2_ADDR bytes of it; the TLVs after it are not
 * needed). Returns 1 and sets *client and *port (family 0 when the
 * header names no client: UNKNOWN, LOCAL, UNSPEC), or 0 when it is not
 * a header this server takes; *client and *port may be changed then. */
LLSMTP_INTERNAL int llsmtp__proxy_parse(const char *h, size_t n,
                                        llsmtp_ip *client, uint16_t *port);
/* Whether h[0..n) can still be a v2 header (its 12-byte signature). */
LLSMTP_INTERNAL int llsmtp__proxy_v2_sig(const char *h, size_t n);
/* A v2 header (16 bytes or more at h): its whole length, TLVs included,
 * and how many bytes of its address block llsmtp__proxy_parse needs. */
LLSMTP_INTERNAL size_t llsmtp__proxy_len(const char *h);
LLSMTP_INTERNAL size_t llsmtp__proxy_v2_addr(const char *h);

#endif /* LLSMTP_INTERNAL_H */

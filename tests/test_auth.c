/* SPDX-License-Identifier: MIT
 *
 * test_auth.c - Base64 (RFC 4648 section 10 vectors and malformed input),
 * SASL PLAIN parsing, a real CRAM-MD5 exchange through on_auth_step (the
 * host side computes HMAC-MD5 here), password wiping checked by scanning
 * the session memory, and STARTTLS at the API level (CVE-2011-0411).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

static void
test_base64_vectors(void **state)
{
    static const char *const v[][2] = {{"", ""},
                                       {"f", "Zg=="},
                                       {"fo", "Zm8="},
                                       {"foo", "Zm9v"},
                                       {"foob", "Zm9vYg=="},
                                       {"fooba", "Zm9vYmE="},
                                       {"foobar", "Zm9vYmFy"}};
    size_t i, n;
    char buf[64];
    (void)state;
    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        assert_int_equal(llsmtp_b64_encode(v[i][0], strlen(v[i][0]), buf,
                                           sizeof buf, &n),
                         LLSMTP_OK);
        assert_int_equal(n, strlen(v[i][1]));
        assert_memory_equal(buf, v[i][1], n);
        assert_int_equal(llsmtp_b64_encoded_len(strlen(v[i][0])), n);
        assert_int_equal(llsmtp_b64_decode(v[i][1], strlen(v[i][1]), buf,
                                           sizeof buf, &n),
                         LLSMTP_OK);
        assert_int_equal(n, strlen(v[i][0]));
        assert_memory_equal(buf, v[i][0], n);
    }
    /* binary, and decoding in place */
    {
        unsigned char bin[256], enc[400];
        for (i = 0; i < 256; i++)
            bin[i] = (unsigned char)i;
        assert_int_equal(llsmtp_b64_encode(bin, 256, (char *)enc, sizeof enc,
                                           &n),
                         LLSMTP_OK);
        assert_int_equal(
            llsmtp_b64_decode((char *)enc, n, enc, sizeof enc, &n), LLSMTP_OK);
        assert_int_equal(n, 256);
        assert_memory_equal(enc, bin, 256);
    }
    assert_int_equal(llsmtp_b64_encode("foo", 3, buf, 3, &n), LLSMTP_E_BUFFER);
    assert_int_equal(llsmtp_b64_decode("Zm9v", 4, buf, 2, &n),
                     LLSMTP_E_BUFFER);
    assert_int_equal(llsmtp_b64_decoded_max(8), 6);
}

static void
test_base64_malformed(void **state)
{
    static const char *const bad[] = {
        "Zg=",      /* length */
        "Zg===",    /* length */
        "Z===",     /* too much padding */
        "====",     /* only padding */
        "Zh==",     /* unused bits set (RFC 4648 3.5) */
        "Zm9=",     /* unused bits set */
        "Zm 9v",    /* whitespace */
        "Zm9v\r\n", /* line break */
        "=Zm9",     /* padding first */
        "Zm=v",     /* padding inside */
        "Zm9v====", /* padding after a full group */
        "Zm9-",     /* URL alphabet */
        "Zm9_",     /* URL alphabet */
        "Zm9\x80",  /* 8-bit */
        "Zg==Zg==", /* padding then more */
    };
    size_t i, n;
    char buf[64];
    (void)state;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (llsmtp_b64_decode(bad[i], strlen(bad[i]), buf, sizeof buf, &n) !=
            LLSMTP_E_SYNTAX)
            fail_msg("accepted %s", bad[i]);
}

static void
test_sasl_plain(void **state)
{
    llsmtp_auth a;
    (void)state;
    assert_int_equal(llsmtp_sasl_plain_parse("admin\0joe\0pw", 12, &a),
                     LLSMTP_OK);
    assert_int_equal(a.authzid.n, 5);
    assert_memory_equal(a.user.p, "joe", 3);
    assert_int_equal(a.password.n, 2);
    assert_int_equal(llsmtp_sasl_plain_parse("\0joe\0pw", 7, &a), LLSMTP_OK);
    assert_int_equal(a.authzid.n, 0);
    /* a password may hold spaces and any UTF-8 */
    assert_int_equal(llsmtp_sasl_plain_parse("\0joe\0p w\xc3\xa9", 10, &a),
                     LLSMTP_OK);
    assert_int_equal(llsmtp_sasl_plain_parse("\0joe\0", 5, &a),
                     LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_sasl_plain_parse("\0\0pw", 4, &a),
                     LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_sasl_plain_parse("joepw", 5, &a), LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_sasl_plain_parse("\0joe", 4, &a), LLSMTP_E_SYNTAX);
    assert_int_equal(llsmtp_sasl_plain_parse("\0joe\0pw\0x", 9, &a),
                     LLSMTP_E_SYNTAX); /* a NUL in the password */
    assert_int_equal(llsmtp_sasl_plain_parse("\0jo\ne\0pw", 8, &a),
                     LLSMTP_E_SYNTAX);
    assert_string_equal(llsmtp_sasl_login_user_prompt, "VXNlcm5hbWU6");
    assert_string_equal(llsmtp_sasl_login_pass_prompt, "UGFzc3dvcmQ6");
}

/* ---- MD5 (RFC 1321) and HMAC (RFC 2104), for the CRAM-MD5 host ----- */

typedef struct md5 {
    uint32_t h[4];
    uint64_t len;
    unsigned char buf[64];
    size_t n;
} md5;

#define ROL(x, c) (((x) << (c)) | ((x) >> (32 - (c))))

static void
md5_block(md5 *m, const unsigned char *p)
{
    static const uint32_t k[64] = {
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a,
        0xa8304613, 0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be,
        0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340,
        0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
        0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8,
        0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c,
        0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
        0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
        0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92,
        0xffeff47d, 0x85845dd1, 0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1,
        0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};
    static const unsigned r[64] = {7,  12, 17, 22, 7,  12, 17, 22, 7,  12, 17,
                                   22, 7,  12, 17, 22, 5,  9,  14, 20, 5,  9,
                                   14, 20, 5,  9,  14, 20, 5,  9,  14, 20, 4,
                                   11, 16, 23, 4,  11, 16, 23, 4,  11, 16, 23,
                                   4,  11, 16, 23, 6,  10, 15, 21, 6,  10, 15,
                                   21, 6,  10, 15, 21, 6,  10, 15, 21};
    uint32_t w[16], a = m->h[0], b = m->h[1], c = m->h[2], d = m->h[3];
    unsigned i;
    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
               (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
    for (i = 0; i < 64; i++) {
        uint32_t f, t;
        unsigned g;
        if (i < 16) {
            f = (b & c) | (~b & d);
            g = i;
        } else if (i < 32) {
            f = (d & b) | (~d & c);
            g = (5 * i + 1) % 16;
        } else if (i < 48) {
            f = b ^ c ^ d;
            g = (3 * i + 5) % 16;
        } else {
            f = c ^ (b | ~d);
            g = (7 * i) % 16;
        }
        t = d;
        d = c;
        c = b;
        b = b + ROL(a + f + k[i] + w[g], r[i]);
        a = t;
    }
    m->h[0] += a;
    m->h[1] += b;
    m->h[2] += c;
    m->h[3] += d;
}

static void
md5_init(md5 *m)
{
    m->h[0] = 0x67452301;
    m->h[1] = 0xefcdab89;
    m->h[2] = 0x98badcfe;
    m->h[3] = 0x10325476;
    m->len = 0;
    m->n = 0;
}

static void
md5_add(md5 *m, const void *data, size_t n)
{
    const unsigned char *p = (const unsigned char *)data;
    m->len += n;
    while (n--) {
        m->buf[m->n++] = *p++;
        if (m->n == 64) {
            md5_block(m, m->buf);
            m->n = 0;
        }
    }
}

static void
md5_end(md5 *m, unsigned char out[16])
{
    uint64_t bits = m->len * 8;
    unsigned char pad = 0x80, z = 0, l[8];
    int i;
    md5_add(m, &pad, 1);
    while (m->n != 56)
        md5_add(m, &z, 1);
    for (i = 0; i < 8; i++)
        l[i] = (unsigned char)(bits >> (8 * i));
    md5_add(m, l, 8);
    for (i = 0; i < 16; i++)
        out[i] = (unsigned char)(m->h[i / 4] >> (8 * (i % 4)));
}

static void
hmac_md5(const char *key, const char *msg, char hex[33])
{
    unsigned char k[64], ipad[64], opad[64], inner[16], out[16];
    md5 m;
    size_t i, kl = strlen(key);
    memset(k, 0, sizeof k);
    memcpy(k, key, kl); /* keys here are short */
    for (i = 0; i < 64; i++) {
        ipad[i] = (unsigned char)(k[i] ^ 0x36);
        opad[i] = (unsigned char)(k[i] ^ 0x5c);
    }
    md5_init(&m);
    md5_add(&m, ipad, 64);
    md5_add(&m, msg, strlen(msg));
    md5_end(&m, inner);
    md5_init(&m);
    md5_add(&m, opad, 64);
    md5_add(&m, inner, 16);
    md5_end(&m, out);
    for (i = 0; i < 16; i++)
        sprintf(hex + 2 * i, "%02x", out[i]);
}

static void
test_hmac_md5_vector(void **state)
{
    char hex[33];
    (void)state;
    /* RFC 2195 section 2: the CRAM-MD5 example */
    hmac_md5("tanstaaftanstaaf", "<1896.697170952@postoffice.reston.mci.net>",
             hex);
    assert_string_equal(hex, "b913a602c7eda7a495b4e6e7334d3890");
}

/* The host side of CRAM-MD5 (RFC 2195). */
static const char cram_challenge[] = "<1896.697170952@postoffice.example.net>";
static int cram_steps;
static int
cram_on_auth_step(llsmtp_server *s, const llsmtp_auth_step *st,
                  llsmtp_reply *r)
{
    char want[80], hex[33];
    (void)s;
    cram_steps++;
    if (st->step == 0) {
        assert_false(st->has_data);
        return llsmtp_reply_challenge(r, cram_challenge,
                                      strlen(cram_challenge)) == LLSMTP_OK
                   ? LLSMTP_OK
                   : LLSMTP_E_CALLBACK;
    }
    hmac_md5("tanstaaftanstaaf", cram_challenge, hex);
    snprintf(want, sizeof want, "tim %s", hex);
    if (st->data.n == strlen(want) &&
        memcmp(st->data.p, want, st->data.n) == 0)
        llsmtp_reply_set(r, 235, NULL, NULL);
    else
        llsmtp_reply_set(r, 535, NULL, NULL);
    return LLSMTP_OK;
}

static void
test_cram_md5_exchange(void **state)
{
    llsmtp_callbacks cb;
    llsmtp_config cfg;
    th_host h;
    llsmtp_server *s;
    size_t used, olen, n;
    const char *out, *p;
    char chal[128], resp[128], line[200], hex[33];
    (void)state;
    memset(&cb, 0, sizeof cb);
    cb.on_auth_step = cram_on_auth_step;
    llsmtp_config_init(&cfg);
    cfg.hostname = "mx.example.test";
    cfg.callbacks = &cb;
    cfg.extensions |= LLSMTP_EXT_AUTH;
    cfg.flags |= LLSMTP_CFG_AUTH_CLEARTEXT;
    cfg.auth_mechanisms = "CRAM-MD5 PLAIN";
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    llsmtp_server_start(s);
    {
        static const char cmd[] = "EHLO c\r\nAUTH CRAM-MD5\r\n";
        assert_int_equal(llsmtp_server_feed(s, cmd, sizeof cmd - 1, &used),
                         LLSMTP_OK);
    }
    out = th_output(s, &olen);
    assert_true(th_contains(out, olen, "250-AUTH CRAM-MD5 PLAIN\r\n"));
    /* the challenge line is the last line of the output */
    assert_true(olen > 8 && memcmp(out + olen - 2, "\r\n", 2) == 0);
    p = out + olen - 2;
    while (p > out && !(p[-1] == '\n'))
        p--;
    assert_memory_equal(p, "334 ", 4);
    p += 4;
    assert_int_equal(llsmtp_b64_decode(p, (size_t)(out + olen - 2 - p), chal,
                                       sizeof chal, &n),
                     LLSMTP_OK);
    assert_int_equal(n, strlen(cram_challenge));
    assert_memory_equal(chal, cram_challenge, n);
    (void)llsmtp_server_consume(s, olen);
    /* the client answers "user HMAC-MD5(password, challenge)" */
    hmac_md5("tanstaaftanstaaf", cram_challenge, hex);
    snprintf(resp, sizeof resp, "tim %s", hex);
    assert_int_equal(llsmtp_b64_encode(resp, strlen(resp), line, sizeof line,
                                       &n),
                     LLSMTP_OK);
    memcpy(line + n, "\r\n", 2);
    assert_int_equal(llsmtp_server_feed(s, line, n + 2, &used), LLSMTP_OK);
    out = th_output(s, &olen);
    if (olen != 37)
        fail_msg("got %.*s", (int)olen, out);
    assert_memory_equal(out, "235 2.7.0 Authentication successful\r\n", 37);
    assert_true(llsmtp_server_authenticated(s));
    assert_int_equal(cram_steps, 2);
    free(s);
}

/* After the decision no trace of the password is left in the session. */
static int
wipe_on_auth(llsmtp_server *s, const llsmtp_auth *c, llsmtp_reply *r)
{
    (void)s;
    assert_int_equal(c->password.n, 14);
    assert_memory_equal(c->password.p, "Tr0ub4dor&3xyz", 14);
    llsmtp_reply_set(r, 235, NULL, NULL);
    return LLSMTP_OK;
}

static void
test_password_wiped(void **state)
{
    llsmtp_callbacks cb;
    llsmtp_config cfg;
    int mode;
    char b64[64], u64[64], l64[64];
    size_t n;
    (void)state;
    memset(&cb, 0, sizeof cb);
    cb.on_auth = wipe_on_auth;
    llsmtp_config_init(&cfg);
    cfg.hostname = "mx.example.test";
    cfg.callbacks = &cb;
    cfg.extensions |= LLSMTP_EXT_AUTH;
    cfg.flags |= LLSMTP_CFG_AUTH_CLEARTEXT;
    llsmtp_b64_encode("\0joe\0Tr0ub4dor&3xyz", 19, b64, sizeof b64, &n);
    b64[n] = '\0';
    llsmtp_b64_encode("Tr0ub4dor&3xyz", 14, l64, sizeof l64, &n);
    l64[n] = '\0';
    llsmtp_b64_encode("joe", 3, u64, sizeof u64, &n);
    u64[n] = '\0';
    /* whole lines (parsed in place) and byte by byte (assembled in the
     * session's line buffer), PLAIN and LOGIN */
    for (mode = 0; mode < 4; mode++) {
        th_host h;
        llsmtp_server *s;
        th_buf in = {0};
        size_t sz = llsmtp_server_size(&cfg), used, i;
        memset(&h, 0, sizeof h);
        s = th_session(&cfg, &h);
        llsmtp_server_start(s);
        th_buf_adds(&in, "EHLO c\r\n");
        if (mode < 2) {
            th_buf_adds(&in, "AUTH PLAIN ");
            th_buf_adds(&in, b64);
            th_buf_adds(&in, "\r\n");
        } else {
            th_buf_adds(&in, "AUTH LOGIN\r\n");
            th_buf_adds(&in, u64);
            th_buf_adds(&in, "\r\n");
            th_buf_adds(&in, l64);
            th_buf_adds(&in, "\r\n");
        }
        if (mode % 2 == 0) {
            assert_int_equal(llsmtp_server_feed(s, in.p, in.n, &used),
                             LLSMTP_OK);
        } else {
            for (i = 0; i < in.n; i++)
                assert_int_equal(llsmtp_server_feed(s, in.p + i, 1, &used),
                                 LLSMTP_OK);
        }
        assert_true(llsmtp_server_authenticated(s));
        assert_false(th_contains((const char *)s, sz, "Tr0ub4dor"));
        assert_false(th_contains((const char *)s, sz, b64 + 8));
        assert_false(th_contains((const char *)s, sz, l64));
        free(s);
        th_buf_free(&in);
    }
}

/* STARTTLS through the API: bytes after it are dropped, state is reset. */
static void
test_starttls_api(void **state)
{
    llsmtp_config cfg;
    th_host h;
    llsmtp_server *s;
    size_t used, olen;
    static const char in[] =
        "EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x.test>\r\n";
    const char *out;
    (void)state;
    llsmtp_config_init(&cfg);
    cfg.hostname = "mx.example.test";
    cfg.extensions |= LLSMTP_EXT_STARTTLS;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    /* before the greeting: implicit TLS is not what we want here */
    llsmtp_server_start(s);
    assert_int_equal(llsmtp_server_tls_started(s), LLSMTP_E_STATE);
    assert_int_equal(llsmtp_server_feed(s, in, sizeof in - 1, &used),
                     LLSMTP_START_TLS);
    assert_int_equal(used, sizeof in - 1); /* all consumed: the rest dropped */
    out = th_output(s, &olen);
    assert_memory_equal(out + olen - 30, "220 2.0.0 Ready to start TLS\r\n",
                        30);
    (void)llsmtp_server_consume(s, olen);
    /* more plaintext before the handshake is dropped as well */
    assert_int_equal(TH_FEED(s, "RCPT TO:<a@b.c>\r\n", &used),
                     LLSMTP_START_TLS);
    assert_int_equal(used, 17);
    assert_int_equal(llsmtp_server_timeout(s, NULL), LLSMTP_TIMEOUT_NONE);
    assert_int_equal(llsmtp_server_tls_started(s), LLSMTP_OK);
    assert_true(llsmtp_server_tls_active(s));
    assert_int_equal(llsmtp_server_helo_kind(s), -1);
    assert_int_equal(llsmtp_server_tls_started(s), LLSMTP_E_STATE);
    assert_int_equal(TH_FEED(s, "MAIL FROM:<a@b.c>\r\n", &used), LLSMTP_OK);
    out = th_output(s, &olen);
    assert_memory_equal(out, "503 5.5.1 Error: send HELO/EHLO first\r\n", 39);
    free(s);

    /* implicit TLS (port 465): marked before the greeting */
    memset(&h, 0, sizeof h);
    cfg.extensions |= LLSMTP_EXT_AUTH;
    s = th_session(&cfg, &h);
    assert_int_equal(llsmtp_server_tls_started(s), LLSMTP_OK);
    llsmtp_server_start(s);
    assert_int_equal(TH_FEED(s, "EHLO c\r\n", &used), LLSMTP_OK);
    out = th_output(s, &olen);
    assert_false(th_contains(out, olen, "STARTTLS"));
    assert_true(th_contains(out, olen, "250-AUTH PLAIN LOGIN\r\n"));
    free(s);
}

/* CVE-2011-0411 with a deferred STARTTLS decision: what a man in the
 * middle puts behind STARTTLS, in the same read or in later ones while
 * the host decides, must never run after the handshake, whichever order
 * the host then does things in; after a refusal the session goes on. */
static int starttls_mails;

static int
defer_starttls(llsmtp_server *s, llsmtp_reply *r)
{
    (void)s;
    (void)r;
    return LLSMTP_PAUSED;
}

static int
count_mail(llsmtp_server *s, const llsmtp_path *p, const llsmtp_params *ps,
           llsmtp_reply *r)
{
    (void)s;
    (void)p;
    (void)ps;
    (void)r;
    starttls_mails++;
    return LLSMTP_OK;
}

static void
test_starttls_deferred_drops_injection(void **state)
{
    llsmtp_callbacks cb;
    llsmtp_config cfg;
    llsmtp_server *s;
    llsmtp_reply no = LLSMTP_REPLY_INIT;
    size_t used, sz;
    int accept;
    static const char first[] = "STARTTLS\r\nMAIL FROM:<a@evil.test>\r\n";
    static const char later[] =
        "EHLO evil.test\r\nMAIL FROM:<b@evil.test>\r\n";
    (void)state;
    memset(&cb, 0, sizeof cb);
    cb.on_starttls = defer_starttls;
    cb.on_mail_from = count_mail;
    llsmtp_config_init(&cfg);
    cfg.hostname = "mx.example.test";
    cfg.callbacks = &cb;
    cfg.extensions |= LLSMTP_EXT_STARTTLS;
    sz = llsmtp_server_size(&cfg);
    s = (llsmtp_server *)malloc(sz);
    for (accept = 0; accept < 2; accept++) {
        assert_non_null(llsmtp_server_init(s, sz, &cfg, NULL));
        llsmtp_server_start(s);
        assert_int_equal(TH_FEED(s, "EHLO c.test\r\n", &used), LLSMTP_OK);
        (void)llsmtp_server_consume(s, llsmtp_server_output(s).n);
        starttls_mails = 0;
        assert_int_equal(TH_FEED(s, first, &used), LLSMTP_PAUSED);
        assert_int_equal(used, sizeof first - 1); /* the rest dropped */
        assert_int_equal(TH_FEED(s, later, &used), LLSMTP_PAUSED);
        assert_int_equal(used, sizeof later - 1); /* and what follows */
        assert_int_equal(llsmtp_server_pending(s), LLSMTP_PENDING_STARTTLS);
        if (accept) {
            assert_int_equal(llsmtp_server_resume(s, NULL), LLSMTP_START_TLS);
            assert_int_equal(llsmtp_server_tls_started(s), LLSMTP_OK);
        } else {
            llsmtp_reply_set(&no, 454, "4.7.0", "TLS not available");
            assert_int_equal(llsmtp_server_resume(s, &no), LLSMTP_OK);
            /* refused: the next command is read as usual */
            assert_int_equal(TH_FEED(s, "MAIL FROM:<c@ok.test>\r\n", &used),
                             LLSMTP_OK);
            assert_int_equal(starttls_mails, 1);
            continue;
        }
        assert_int_equal(starttls_mails, 0);
        assert_int_equal(llsmtp_server_helo_kind(s), -1);
    }
    free(s);
}

/* A deferred AUTH decision: credentials are gone before the resume. */
static int
defer_on_auth(llsmtp_server *s, const llsmtp_auth *c, llsmtp_reply *r)
{
    (void)s;
    (void)c;
    (void)r;
    return LLSMTP_PAUSED;
}

static void
test_auth_deferred_wipe(void **state)
{
    llsmtp_callbacks cb;
    llsmtp_config cfg;
    th_host h;
    llsmtp_server *s;
    llsmtp_reply ok = LLSMTP_REPLY_INIT;
    size_t used, sz, i;
    char line[80];
    size_t n;
    (void)state;
    memset(&cb, 0, sizeof cb);
    cb.on_auth = defer_on_auth;
    llsmtp_config_init(&cfg);
    cfg.hostname = "mx.example.test";
    cfg.callbacks = &cb;
    cfg.extensions |= LLSMTP_EXT_AUTH;
    cfg.flags |= LLSMTP_CFG_AUTH_CLEARTEXT;
    memset(&h, 0, sizeof h);
    s = th_session(&cfg, &h);
    sz = llsmtp_server_size(&cfg);
    llsmtp_server_start(s);
    memcpy(line, "AUTH PLAIN ", 11);
    llsmtp_b64_encode("\0joe\0hunter2hunter2", 19, line + 11, 60, &n);
    memcpy(line + 11 + n, "\r\n", 2);
    assert_int_equal(TH_FEED(s, "EHLO c\r\n", &used), LLSMTP_OK);
    for (i = 0; i < 11 + n + 2; i++) {
        int rc = llsmtp_server_feed(s, line + i, 1, &used);
        assert_int_equal(rc, i + 1 < 11 + n + 2 ? LLSMTP_OK : LLSMTP_PAUSED);
    }
    assert_int_equal(llsmtp_server_pending(s), LLSMTP_PENDING_AUTH);
    assert_false(th_contains((const char *)s, sz, "hunter2"));
    /* NULL keeps the default, a refusal; accept explicitly */
    llsmtp_reply_set(&ok, 235, NULL, NULL);
    assert_int_equal(llsmtp_server_resume(s, &ok), LLSMTP_OK);
    assert_true(llsmtp_server_authenticated(s));
    free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_vectors),
        cmocka_unit_test(test_base64_malformed),
        cmocka_unit_test(test_sasl_plain),
        cmocka_unit_test(test_hmac_md5_vector),
        cmocka_unit_test(test_cram_md5_exchange),
        cmocka_unit_test(test_password_wiped),
        cmocka_unit_test(test_starttls_api),
        cmocka_unit_test(test_auth_deferred_wipe),
        cmocka_unit_test(test_starttls_deferred_drops_injection),
    };
    return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}

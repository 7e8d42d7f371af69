/* SPDX-License-Identifier: MIT
 *
 * fuzz_mx.c - libFuzzer target for lib/mx.c. Input: a relay-host string
 * up to the first NUL, then records (preference, host index, flags) over a
 * small set of names. Invariants of llsmtp_mx_order: the output is a
 * permutation of the input minus merged and pruned records, preferences
 * never decrease, this host and anything not better than it is gone; the
 * relay-host parser's host is NUL-terminated text and ports are 1..65535.
 */
#include <llsmtp.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[8] = {"a.example", "B.example",  "b.example.",
                                     "c.example", "me.example", ".",
                                     "",          "d.example"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t hl = nul ? (size_t)(nul - data) : size, i, j, n = 0, in_n;
    llsmtp_relayhost rh;
    llsmtp_mx v[16], in[16];
    llsmtp_mx_opts o;
    static const char *const local[] = {"ME.example"};
    size_t at;
    int rc;
    char ip[64];

    rc = llsmtp_relayhost_parse((const char *)data, hl, &rh, &at);
    if (rc == LLSMTP_OK) {
        if (memchr(rh.host, 0, sizeof rh.host) == NULL)
            abort();
        if (rh.ip.family && llsmtp_ip_format(&rh.ip, ip, sizeof ip) == 0)
            abort();
    } else if (at > hl) {
        abort();
    }
    if (nul == NULL)
        return 0;
    data = nul + 1;
    size -= hl + 1;
    llsmtp_mx_opts_init(&o);
    o.local_names = local;
    o.nlocal_names = size ? (data[0] & 1) : 0;
    o.seed = size ? data[0] : 0;
    for (i = 1; i + 2 < size && n < 16; i += 3) {
        memset(&v[n], 0, sizeof v[n]);
        v[n].pref = (uint16_t)(data[i] % 40);
        strcpy(v[n].host, names[data[i + 1] & 7]);
        if (data[i + 2] & 1) {
            v[n].addrs[0].family = 4;
            v[n].addrs[0].addr[3] = data[i + 2];
            v[n].naddrs = 1;
        }
        n++;
    }
    memcpy(in, v, sizeof v);
    in_n = n;
    rc = llsmtp_mx_order("x.example", 9, v, &n, 16, &o);
    if (rc < 0 || n > 16 || (in_n > 0 && n > in_n))
        abort();
    if (rc != LLSMTP_MX_OK)
        return 0;
    for (i = 0; i < n; i++) {
        int found = 0;
        if (i && v[i].pref < v[i - 1].pref)
            abort();
        if (strcmp(v[i].host, "me.example") == 0 && o.nlocal_names)
            abort(); /* this host must be gone */
        for (j = 0; j < in_n; j++)
            if (strcmp(in[j].host, v[i].host) == 0 && in[j].pref >= v[i].pref)
                found = 1;
        if (!found)
            abort();
    }
    return 0;
}

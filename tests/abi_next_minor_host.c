/* SPDX-License-Identifier: MIT
 *
 * abi_next_minor_host.c - a host built with today's header, linked by
 * tests/abi-next-minor.sh against the next minor library (the same
 * sources, one member appended to llsmtp_config, llsmtp_callbacks and
 * llsmtp_relay_policy each, the minor version one higher): what 1.x
 * promises (include/llsmtp.h, llsmtp_abi) is that it still runs.
 */
#include <llsmtp.h>

#include <stdio.h>
#include <stdlib.h>

int
main(void)
{
    llsmtp_config cfg;
    llsmtp_relay_policy p;
    llsmtp_server *s;
    size_t sz;
    int rc = llsmtp_config_init(&cfg), prc = llsmtp_relay_policy_init(&p);
    cfg.relay = &p;
    sz = llsmtp_server_size(&cfg);
    printf("host header %#x, library %#lx: config_init %s, relay_policy_init "
           "%s, server_size %zu\n",
           (unsigned)LLSMTP_VERSION_NUM, llsmtp_version(), llsmtp_errname(rc),
           llsmtp_errname(prc), sz);
    if (rc != LLSMTP_OK || prc != LLSMTP_OK || sz == 0 ||
        llsmtp_version() <= (unsigned long)LLSMTP_VERSION_NUM)
        return 1;
    s = (llsmtp_server *)malloc(sz);
    if (s == NULL || llsmtp_server_init(s, sz, &cfg, NULL) != s ||
        llsmtp_server_start(s) != LLSMTP_OK || llsmtp_server_output(s).n == 0)
        return 1;
    free(s);
    return 0;
}

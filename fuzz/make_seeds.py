#!/usr/bin/env python3
# Regenerates fuzz/corpus/ seeds from tests/transcripts (client bytes only)
# and a few hand-written paths. Run from the repository root:
#   python3 fuzz/make_seeds.py
import os, re, glob, hashlib

from transcript_text import unescape

os.makedirs('fuzz/corpus/fuzz_server', exist_ok=True)
os.makedirs('fuzz/corpus/fuzz_path', exist_ok=True)
for path in sorted(glob.glob('tests/transcripts/*.txt')):
    data = bytearray()
    for line in open(path, encoding='latin-1'):
        line = line.rstrip('\r\n')
        if line.startswith('C:') or line.startswith('R:'):
            body = line[2:]
            if body.startswith(' '): body = body[1:]
            data += unescape(body)
            if line.startswith('C:'): data += b'\r\n'
    name = os.path.basename(path)[:-4]
    for policy in range(3):
        # config bytes: policy, extensions, flags, size, errors, output,
        # line, rng; AUTH/STARTTLS dialogues get AUTH (cleartext) and TLS
        tls = name.startswith(('auth', 'starttls', 'require'))
        esmtp = name.startswith(('bdat', 'binarymime', 'etrn', 'smtputf8', 'dsn'))
        proxy = name.startswith('proxy')
        lmtp = name.startswith('lmtp')
        head = bytes([policy, 0xff if tls else 0x3f,
                      (0x04 if tls else 0) | (0x40 if proxy else 0) |
                      (0x80 if lmtp else 0), 0, 20, 4,
                      0xf8 if esmtp or lmtp else 0, 7])
        with open('fuzz/corpus/fuzz_server/%s-%d' % (name, policy), 'wb') as f:
            f.write(head + bytes(data))
paths = [b'<a@example.org>', b'<>', b'<"john doe"@x.y>', b'<a@[192.0.2.1]>',
         b'<a@[IPv6:2001:db8::1]>', b'<@r1.x,@r2.y:a@b.c> SIZE=10 BODY=8BITMIME',
         b'<Postmaster>', b'<j\xc3\xb6rg@b\xc3\xbccher.example>', b'<a@[tag:x]>',
         b'192.0.2.1', b'::ffff:10.0.0.1', b'2001:db8::1', b'example.org']
for i, p in enumerate(paths):
    for opts in (0, 7):
        with open('fuzz/corpus/fuzz_path/seed-%02d-%d' % (i, opts), 'wb') as f:
            f.write(bytes([opts]) + p)
print('seeds written')

# DNS: the dnsmasq answer for company.test MX, with and without TCP framing
cap = bytes.fromhex(
    "12348580000100020000000307636f6d70616e79047465737400000f0001c00c000f"
    "00010000000000140014036d783207636f6d70616e79047465737400c00c000f00010"
    "00000000014000a036d783107636f6d70616e79047465737400c02c00010001000000"
    "000004c0000202c02c001c000100000000001020010db800000000000000000000000"
    "2c04c00010001000000000004c0000201")
os.makedirs('fuzz/corpus/fuzz_dns', exist_ok=True)
open('fuzz/corpus/fuzz_dns/dnsmasq-mx', 'wb').write(bytes([0]) + cap)
open('fuzz/corpus/fuzz_dns/dnsmasq-mx-tcp', 'wb').write(bytes([0x80]) + len(cap).to_bytes(2, 'big') + cap)
nx = bytes.fromhex("123481830001000000000000") + b"\x07company\x04test\x00\x00\x0f\x00\x01"
open('fuzz/corpus/fuzz_dns/nxdomain', 'wb').write(bytes([0]) + nx)
os.makedirs('fuzz/corpus/fuzz_mx', exist_ok=True)
for i, rh in enumerate([b'mail.example.com:587', b'[192.0.2.1]', b'[IPv6:2001:db8::1]:25', b'smarthost']):
    recs = bytes([1, 10, 0, 1, 10, 1, 0, 20, 4, 1, 5, 3, 0, 30, 5, 0])
    open('fuzz/corpus/fuzz_mx/seed-%d' % i, 'wb').write(rh + b'\0' + recs)
print('dns/mx seeds written')

os.makedirs('fuzz/corpus/fuzz_relay', exist_ok=True)
for i, (net, rcpt) in enumerate([(b'192.168.0.0/16', b'<user@company.test>'),
                                 (b'10.0.0.0/8', b'<user%outside.test@company.test>'),
                                 (b'::ffff:10.0.0.0/104', b'<"a@b"@company.test>'),
                                 (b'2001:db8::/32', b'<@company.test:u@outside.test>'),
                                 (b'0.0.0.0/0', b'<u@[192.0.2.25]>'),
                                 (b'bad', b'<u@x.hosted.test>')]):
    for flags in (0, 1, 4):
        open('fuzz/corpus/fuzz_relay/seed-%d-%d' % (i, flags), 'wb').write(bytes([flags]) + net + b'\0' + rcpt)
print('relay seeds written')

os.makedirs('fuzz/corpus/fuzz_base64', exist_ok=True)
for i, t in enumerate([b'', b'Zm9vYmFy', b'Zg==', b'Zm8=', b'AGFsaWNlAHNlY3JldA==', b'Zh==', b'\x00\xff\x10']):
    open('fuzz/corpus/fuzz_base64/seed-%d' % i, 'wb').write(t)
os.makedirs('fuzz/corpus/fuzz_sasl', exist_ok=True)
for i, t in enumerate([b'\0alice\0secret', b'admin\0alice\0secret', b'\0\0', b'joe+2Bx@example.org', b'+41+42', b'a=b']):
    open('fuzz/corpus/fuzz_sasl/seed-%d' % i, 'wb').write(t)
print('base64/sasl seeds written')

os.makedirs('fuzz/corpus/fuzz_client', exist_ok=True)
for i, t in enumerate([b'\x05220 mx ESMTP\r\n', b'\x03250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n',
                       b'\x01250-a\r\n251 b\r\n', b'\x07.\r\n..x\n.\r.', b'\x02' + b'x' * 600 + b'\r\n']):
    open('fuzz/corpus/fuzz_client/seed-%d' % i, 'wb').write(t)
print('client seeds written')

# PROXY protocol headers (lib/proxy.c): v1 lines and v2 headers, taken and
# refused.
os.makedirs('fuzz/corpus/fuzz_proxy', exist_ok=True)
sig = b'\r\n\r\n\x00\r\nQUIT\n'
for i, t in enumerate([
        b'PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n',
        b'PROXY TCP6 2001:db8::1 2001:db8::2 4000 25\r\n',
        b'PROXY UNKNOWN\r\n',
        b'PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n',
        b'PROXY TCP4 192.0.2.1 198.51.100.2 056324 25\r\n',
        b'PROXY TCP4 2001:db8::1 198.51.100.2 1 25\r\n',
        sig + b'\x21\x11\x00\x0c' + bytes([192, 0, 2, 1, 198, 51, 100, 2]) + b'\xdc\x04\x00\x19',
        sig + b'\x21\x21\x00\x24' + bytes(range(32)) + b'\x0f\xa0\x00\x19',
        sig + b'\x20\x00\x00\x00',
        sig + b'\x21\x11\x00\x13' + bytes([192, 0, 2, 1, 198, 51, 100, 2]) + b'\x00\x01\x00\x19\x04\x00\x04abcd',
        sig + b'\x21\x31\x00\xd8' + bytes(216),
        sig + b'\x21\x12\x00\x0c' + bytes(12)]):
    open('fuzz/corpus/fuzz_proxy/seed-%d' % i, 'wb').write(t)
print('proxy seeds written')

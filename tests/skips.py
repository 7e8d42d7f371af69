# SPDX-License-Identifier: MIT
#
# skips.py - what the Python suites share: a case that cannot run on
# this build says so instead of failing (today, the TLS cases when smtpd
# was built without OpenSSL (no libssl-dev), and tests/haproxy.py's when
# haproxy is not installed; CI sets LLSMTP_NO_SKIPS=1, so a skip there is
# a failure: the native run must exercise every case), the runner
# that reports each case and the suite's closing line, and wait_until,
# the bounded poll for what a server does a little later.
import os, subprocess, time, traceback


class Skip(Exception):
    """Raised by a case that cannot run here; the text is the reason."""


NO_SKIPS = os.environ.get('LLSMTP_NO_SKIPS') == '1'
_tls = {}


def require_tls(smtpd):
    """Skip the calling case unless smtpd (the binary's path) has TLS."""
    if smtpd not in _tls:
        out = subprocess.run([smtpd, '--version'], capture_output=True, text=True).stdout
        _tls[smtpd] = ' tls ' in out and not out.rstrip().endswith(' tls none')
    if not _tls[smtpd]:
        raise Skip('smtpd was built without OpenSSL (install libssl-dev and rebuild)')


def wait_until(pred, timeout=60):
    """A guard, never a measurement: polls pred until it holds (True),
    or timeout seconds pass (False)."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def run_case(fn, only, results, before=None):
    """Runs the case fn unless `only` names others: prints ok, skip or
    FAIL (with the traceback) and goes on; before() runs first, inside
    the case (it may raise Skip)."""
    name = fn.__name__
    if only and name not in only:
        return fn
    try:
        if before is not None:
            before()
        fn()
        results.append((name, None))
        print('ok   %s' % name)
    except Skip as e:
        results.append((name, e))
        print('skip %s: %s' % (name, e))
    except Exception as e:  # report and go on
        results.append((name, e))
        print('FAIL %s: %r' % (name, e))
        traceback.print_exc()
    return fn


def closing_line(results):
    """The suite's last line; results are (name, None | Skip | Exception)."""
    skipped = sum(1 for _, e in results if isinstance(e, Skip))
    failed = sum(1 for _, e in results if e is not None and not isinstance(e, Skip))
    passed = len(results) - failed - skipped
    if NO_SKIPS:
        failed += skipped
    print('%d passed, %d failed, %d skipped' % (passed, failed, skipped))
    return failed

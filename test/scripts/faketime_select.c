/*
 * faketime_select.c — preloaded before libfaketime for the pg_regress runs
 * under a fake clock (test/scripts/run_tests.sh).
 *
 * PostgreSQL 15's postmaster waits in select() and starts background
 * workers, the WAL writer and the autovacuum launcher from signal handlers
 * that run during that wait.  libfaketime's select() turns faking off for
 * the thread around the real call, so a child forked from such a handler
 * keeps the real clock for good (seen: vms workers at the real date while
 * sessions are in 2031).  This select() goes straight to the kernel, so
 * libfaketime never wraps it; every other time function stays faked.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int
select(int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds, struct timeval *timeout)
{
#ifdef SYS_select
	return syscall(SYS_select, nfds, readfds, writefds, exceptfds, timeout);
#else
	struct timespec ts;
	int			rc;

	if (timeout)
	{
		ts.tv_sec = timeout->tv_sec;
		ts.tv_nsec = timeout->tv_usec * 1000;
	}
	rc = syscall(SYS_pselect6, nfds, readfds, writefds, exceptfds, timeout ? &ts : NULL, NULL);
	if (timeout)
	{
		timeout->tv_sec = ts.tv_sec;
		timeout->tv_usec = ts.tv_nsec / 1000;
	}
	return rc;
#endif
}

/*
 * Programs the server runs (COPY TO PROGRAM's shell) need no fake clock,
 * and under it they failed now and then: libfaketime in a freshly exec'd
 * shell opens the shared clock's semaphore, which a postmaster child that
 * inherited the creator's state could remove when it exited, and then
 * exits 1 (seen: regress sip_cascade's key file, under faketime only).
 * The postmaster and every process it forks keep libfaketime, loaded
 * already; only exec'd programs lose it with the variable.
 */
__attribute__((constructor))
static void
drop_preload_for_programs(void)
{
	unsetenv("LD_PRELOAD");
}

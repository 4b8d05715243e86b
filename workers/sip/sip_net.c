/*
 * sip_net.c — the SIP worker's sockets (sip_net.h).
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "sip_net.h"
#include "../worker_tx.h"

#define MAX_BATCH 64			/* datagrams read per recvmmsg */
#define DGRAM_MAX 65536
#define TCP_IDLE_S 600

typedef struct Conn
{
	int			fd;				/* -1: free */
	uint32		gen;
	SBuf		in;
	Peer		peer;
	TimestampTz last_active;
	/* an outgoing connection not yet established (sip_net_connect): what is sent meanwhile waits in out */
	bool		connecting;
	TimestampTz connect_deadline;
	SBuf		out;
	char		error[96];		/* why it closed while connecting (kept until the slot is reused) */
} Conn;

static SipNetHooks hooks;
static int	udp_fd = -1;
static int	listen_fd = -1;
static int	epoll_fd = -1;
static Conn *conns;
static int	n_conns_max;
static uint32 conn_gen = 1;
static int	n_connecting = 0;
static char bound_listen[256];
static int	bound_port;
static char local_ip[64] = "127.0.0.1";

void
sip_net_init(const SipNetHooks *h)
{
	hooks = *h;
	n_conns_max = vms_sip_max_connections;
	conns = MemoryContextAllocZero(vms_worker_cxt, sizeof(Conn) * n_conns_max);
	for (int i = 0; i < n_conns_max; i++)
		conns[i].fd = -1;
	epoll_fd = epoll_create1(EPOLL_CLOEXEC);
}

int
sip_net_wait_fd(void)
{
	return epoll_fd;
}

bool
sip_net_settings_changed(void)
{
	return strcmp(bound_listen, vms_sip_listen ? vms_sip_listen : "*") != 0 || bound_port != vms_sip_port;
}

static void
set_nonblocking(int fd)
{
	int			flags = fcntl(fd, F_GETFL, 0);

	fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	fcntl(fd, F_SETFD, FD_CLOEXEC);
}

void
sip_net_close(void)
{
	if (udp_fd >= 0)
		close(udp_fd);
	if (listen_fd >= 0)
		close(listen_fd);
	for (int i = 0; i < n_conns_max; i++)
		if (conns[i].fd >= 0)
		{
			close(conns[i].fd);
			conns[i].fd = -1;
			sbuf_free(&conns[i].in);
			if (conns[i].connecting)
				sbuf_free(&conns[i].out);
			conns[i].connecting = false;
		}
	n_connecting = 0;
	udp_fd = listen_fd = -1;
}

void
sip_net_open(void)
{
	struct addrinfo hints,
			   *res = NULL;
	char		port[8];
	const char *host = (vms_sip_listen && vms_sip_listen[0] && strcmp(vms_sip_listen, "*") != 0) ? vms_sip_listen : NULL;
	int			on = 1;
	int			rcvbuf = 8 * 1024 * 1024;
	struct epoll_event ev;

	sip_net_close();
	snprintf(port, sizeof(port), "%d", vms_sip_port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_INET;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
	hints.ai_socktype = SOCK_DGRAM;
	if (getaddrinfo(host, port, &hints, &res) != 0 || res == NULL)
		ereport(ERROR, (errcode(ERRCODE_CONFIG_FILE_ERROR),
						errmsg("vms.sip_listen \"%s\" is not a numeric IPv4 address", vms_sip_listen),
						errhint("Use * for all addresses, or an address such as 127.0.0.1.")));

	udp_fd = socket(AF_INET, SOCK_DGRAM, 0);
	setsockopt(udp_fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	setsockopt(udp_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	setsockopt(udp_fd, SOL_SOCKET, SO_SNDBUF, &rcvbuf, sizeof(rcvbuf));
	if (bind(udp_fd, res->ai_addr, res->ai_addrlen) != 0)
	{
		int			e = errno;

		freeaddrinfo(res);
		close(udp_fd);
		udp_fd = -1;
		errno = e;
		ereport(ERROR, (errcode_for_socket_access(),
						errmsg("vms sip could not bind UDP %s:%d: %m", host ? host : "*", vms_sip_port)));
	}
	listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (bind(listen_fd, res->ai_addr, res->ai_addrlen) != 0 || listen(listen_fd, 512) != 0)
	{
		int			e = errno;

		freeaddrinfo(res);
		sip_net_close();
		errno = e;
		ereport(ERROR, (errcode_for_socket_access(),
						errmsg("vms sip could not listen on TCP %s:%d: %m", host ? host : "*", vms_sip_port)));
	}
	freeaddrinfo(res);
	set_nonblocking(udp_fd);
	set_nonblocking(listen_fd);
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.u64 = (uint64) -1;
	epoll_ctl(epoll_fd, EPOLL_CTL_ADD, udp_fd, &ev);
	ev.data.u64 = (uint64) -2;
	epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev);
	strlcpy(bound_listen, vms_sip_listen ? vms_sip_listen : "*", sizeof(bound_listen));
	bound_port = vms_sip_port;
	strlcpy(local_ip, host ? host : "127.0.0.1", sizeof(local_ip));
	ereport(LOG, (errmsg("vms sip listening on %s:%d (UDP and TCP) as %s, realm %s",
						 host ? host : "*", vms_sip_port, vms_sip_id, sip_realm())));
}

const char *
sip_local_ip(void)
{
	return local_ip;
}

int
sip_local_port(void)
{
	return bound_port;
}

static void
fill_peer(Peer *p, int transport, struct sockaddr_storage *addr, socklen_t len)
{
	p->transport = transport;
	memcpy(&p->addr, addr, len);
	p->addrlen = len;
	if (addr->ss_family == AF_INET)
	{
		struct sockaddr_in *sin = (struct sockaddr_in *) addr;

		inet_ntop(AF_INET, &sin->sin_addr, p->ip, sizeof(p->ip));
		p->port = ntohs(sin->sin_port);
	}
	else
	{
		strlcpy(p->ip, "?", sizeof(p->ip));
		p->port = 0;
	}
}

static void
close_conn(int i)
{
	epoll_ctl(epoll_fd, EPOLL_CTL_DEL, conns[i].fd, NULL);
	close(conns[i].fd);
	conns[i].fd = -1;
	sbuf_free(&conns[i].in);
	if (conns[i].connecting)
	{
		conns[i].connecting = false;
		sbuf_free(&conns[i].out);
		n_connecting--;
	}
}

/*
 * UDP answers to one batch of datagrams go out together with sendmmsg():
 * one system call for the batch instead of one per answer.
 */
#define OUT_SLOT 2048
static bool batching = false;
static int	n_out = 0;
static char *out_buf[MAX_BATCH];
static struct mmsghdr out_msgs[MAX_BATCH];
static struct iovec out_iov[MAX_BATCH];
static struct sockaddr_storage out_addr[MAX_BATCH];

static void
flush_out(void)
{
	int			sent = 0;

	while (sent < n_out)
	{
		int			n = sendmmsg(udp_fd, out_msgs + sent, n_out - sent, MSG_DONTWAIT);

		if (n <= 0)
		{
			/* one unreachable address must not cost the others their answers */
			sip_log_limited(LOG_SEND, "UDP send of an answer failed: %m");
			n = 1;
		}
		sent += n;
	}
	n_out = 0;
}

void
sip_send(const Peer *peer, const char *data, size_t len)
{
	ssize_t		n;

	if (peer->transport == TRANSPORT_UDP && batching && len <= OUT_SLOT)
	{
		if (n_out == MAX_BATCH)
			flush_out();
		if (out_buf[n_out] == NULL)
			out_buf[n_out] = MemoryContextAlloc(vms_worker_cxt, OUT_SLOT);
		memcpy(out_buf[n_out], data, len);
		memcpy(&out_addr[n_out], &peer->addr, peer->addrlen);
		out_iov[n_out].iov_base = out_buf[n_out];
		out_iov[n_out].iov_len = len;
		memset(&out_msgs[n_out], 0, sizeof(out_msgs[n_out]));
		out_msgs[n_out].msg_hdr.msg_iov = &out_iov[n_out];
		out_msgs[n_out].msg_hdr.msg_iovlen = 1;
		out_msgs[n_out].msg_hdr.msg_name = &out_addr[n_out];
		out_msgs[n_out].msg_hdr.msg_namelen = peer->addrlen;
		n_out++;
		sip_count(C_OUT, 1);
		return;
	}

	if (peer->transport == TRANSPORT_TCP)
	{
		Conn	   *c;

		if (peer->conn < 0 || peer->conn >= n_conns_max)
			return;
		c = &conns[peer->conn];
		if (c->fd < 0 || c->gen != peer->conn_gen)
		{
			sip_log_limited(LOG_SEND, "TCP connection to %s:%d is gone", peer->ip, peer->port);
			return;
		}
		/* not yet established: sent when it is (a bounded queue: a peer that never answers is dropped) */
		if (c->connecting)
		{
			sbuf_append(&c->out, data, len);
			if (c->out.overflow)
			{
				sip_log_limited(LOG_TCP, "closing TCP connection to %s:%d: too much waits for it to be established",
								peer->ip, peer->port);
				strlcpy(c->error, "too much waited for the connection", sizeof(c->error));
				close_conn(peer->conn);
				return;
			}
			sip_count(C_OUT, 1);
			return;
		}
		/* a SIP message is small: a full send buffer means a stuck peer, which is dropped */
		n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n != (ssize_t) len)
		{
			sip_log_limited(LOG_TCP, "closing TCP connection from %s:%d: send failed", peer->ip, peer->port);
			close_conn(peer->conn);
			return;
		}
	}
	else
	{
		n = sendto(udp_fd, data, len, MSG_DONTWAIT, (struct sockaddr *) &peer->addr, peer->addrlen);
		if (n < 0)
		{
			sip_log_limited(LOG_SEND, "UDP send to %s:%d failed: %m", peer->ip, peer->port);
			return;
		}
	}
	sip_count(C_OUT, 1);
}

static void
read_udp(void)
{
	static char *buf[MAX_BATCH];
	struct mmsghdr msgs[MAX_BATCH];
	struct iovec iov[MAX_BATCH];
	struct sockaddr_storage addrs[MAX_BATCH];
	int			rounds = 0;

	if (buf[0] == NULL)
		for (int i = 0; i < MAX_BATCH; i++)
			buf[i] = MemoryContextAlloc(vms_worker_cxt, DGRAM_MAX + 1);
	/* bounded: other work (flushes, timers, latch) must not starve */
	while (rounds++ < 64)
	{
		int			n;

		for (int i = 0; i < MAX_BATCH; i++)
		{
			iov[i].iov_base = buf[i];
			iov[i].iov_len = DGRAM_MAX;
			memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
			msgs[i].msg_hdr.msg_name = &addrs[i];
			msgs[i].msg_hdr.msg_namelen = sizeof(addrs[i]);
		}
		n = recvmmsg(udp_fd, msgs, MAX_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return;
		hooks.before_messages();
		for (int i = 0; i < n; i++)
		{
			Peer		peer;

			memset(&peer, 0, sizeof(peer));
			fill_peer(&peer, TRANSPORT_UDP, &addrs[i], msgs[i].msg_hdr.msg_namelen);
			peer.conn = -1;
			sip_count(C_IN, 1);
			if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
			{
				sip_count(C_PARSE_ERRORS, 1);
				sip_log_limited(LOG_PARSE, "dropped a truncated datagram from %s:%d", peer.ip, peer.port);
				continue;
			}
			buf[i][msgs[i].msg_len] = '\0';
			batching = true;
			hooks.message(buf[i], msgs[i].msg_len, &peer);
			batching = false;
		}
		flush_out();
		if (n < MAX_BATCH)
			return;
	}
}

static void
accept_conns(void)
{
	for (int k = 0; k < 64; k++)
	{
		struct sockaddr_storage addr;
		socklen_t	len = sizeof(addr);
		int			fd = accept(listen_fd, (struct sockaddr *) &addr, &len);
		int			i;
		struct epoll_event ev;

		if (fd < 0)
			return;
		for (i = 0; i < n_conns_max; i++)
			if (conns[i].fd < 0)
				break;
		if (i == n_conns_max)
		{
			sip_log_limited(LOG_TCP, "refusing a TCP connection: vms.sip_max_connections (%d) reached", n_conns_max);
			close(fd);
			continue;
		}
		set_nonblocking(fd);
		conns[i].fd = fd;
		conns[i].gen = conn_gen++;
		/* room for one message under the limit plus the read that completes it */
		sbuf_init(&conns[i].in, (size_t) vms_sip_max_message + 16384 + 1);
		memset(&conns[i].peer, 0, sizeof(Peer));
		fill_peer(&conns[i].peer, TRANSPORT_TCP, &addr, len);
		conns[i].peer.conn = i;
		conns[i].peer.conn_gen = conns[i].gen;
		conns[i].last_active = sip_now;
		memset(&ev, 0, sizeof(ev));
		ev.events = EPOLLIN;
		ev.data.u64 = (uint64) i;
		epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
	}
}

/*
 * An outgoing TCP connection (the client role: an upper platform that
 * wants TCP), kept and read like an accepted one; p gets its slot.  The
 * connect does not block: an address that refuses at once fails here; else
 * the connection is "connecting" (sip_net_conn_connecting) until the epoll
 * set reports it writable (established: what was sent meanwhile goes out)
 * or failed, or CONNECT_TIMEOUT_MS pass (an address that drops SYNs); then
 * it is closed with sip_net_conn_error's reason.  No round of the loop
 * waits for an upper platform.
 */
#define CONNECT_TIMEOUT_MS 3000
#define CONNECT_QUEUE_BYTES (256 * 1024)
static char connect_error[96];

bool
sip_net_connect(Peer *p)
{
	struct epoll_event ev;
	int			fd;
	int			i;
	bool		pending;

	p->conn = -1;				/* a failure here is told by connect_error, not by an earlier connection's */
	for (i = 0; i < n_conns_max; i++)
		if (conns[i].fd < 0)
			break;
	if (i == n_conns_max)
	{
		sip_log_limited(LOG_TCP, "no TCP connection to %s:%d: vms.sip_max_connections (%d) reached", p->ip, p->port,
						n_conns_max);
		strlcpy(connect_error, "vms.sip_max_connections reached", sizeof(connect_error));
		return false;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
	{
		snprintf(connect_error, sizeof(connect_error), "%m");
		return false;
	}
	pending = connect(fd, (struct sockaddr *) &p->addr, p->addrlen) != 0;
	if (pending && errno != EINPROGRESS)
	{
		snprintf(connect_error, sizeof(connect_error), "%m");
		sip_log_limited(LOG_TCP, "could not connect to %s:%d over TCP: %s", p->ip, p->port, connect_error);
		close(fd);
		return false;
	}
	conns[i].fd = fd;
	conns[i].gen = conn_gen++;
	sbuf_init(&conns[i].in, (size_t) vms_sip_max_message + 16384 + 1);
	conns[i].peer = *p;
	conns[i].peer.transport = TRANSPORT_TCP;
	conns[i].peer.conn = i;
	conns[i].peer.conn_gen = conns[i].gen;
	conns[i].last_active = sip_now;
	conns[i].error[0] = '\0';
	conns[i].connecting = pending;
	if (pending)
	{
		conns[i].connect_deadline = TimestampTzPlusMilliseconds(sip_now, CONNECT_TIMEOUT_MS);
		sbuf_init(&conns[i].out, CONNECT_QUEUE_BYTES);
		n_connecting++;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = pending ? EPOLLOUT : EPOLLIN;
	ev.data.u64 = (uint64) i;
	epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
	*p = conns[i].peer;
	return true;
}

/* a connecting connection failed: closed, with why */
static void
connect_failed(int i, const char *why)
{
	Conn	   *c = &conns[i];

	strlcpy(c->error, why, sizeof(c->error));
	sip_log_limited(LOG_TCP, "could not connect to %s:%d over TCP: %s", c->peer.ip, c->peer.port, why);
	close_conn(i);
}

/* the epoll set reported a connecting connection: established (what waited goes out) or failed */
static void
connect_done(int i)
{
	Conn	   *c = &conns[i];
	int			err = 0;
	socklen_t	len = sizeof(err);
	struct epoll_event ev;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err == EINPROGRESS || err == EALREADY)
		return;
	if (err != 0)
	{
		connect_failed(i, strerror(err));
		return;
	}
	c->connecting = false;
	n_connecting--;
	c->last_active = sip_now;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.u64 = (uint64) i;
	epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
	if (c->out.len > 0 && send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t) c->out.len)
	{
		sbuf_free(&c->out);
		sip_log_limited(LOG_TCP, "closing TCP connection to %s:%d: send failed", c->peer.ip, c->peer.port);
		strlcpy(c->error, "send failed", sizeof(c->error));
		close_conn(i);
		return;
	}
	sbuf_free(&c->out);
}

/* connections still connecting after CONNECT_TIMEOUT_MS: the address does not answer */
static void
connect_expire(void)
{
	for (int i = 0; i < n_conns_max && n_connecting > 0; i++)
		if (conns[i].fd >= 0 && conns[i].connecting && sip_now >= conns[i].connect_deadline)
			connect_failed(i, "timed out");
}

/* is p's connection still being established */
bool
sip_net_conn_connecting(const Peer *p)
{
	return sip_net_conn_alive(p) && conns[p->conn].connecting;
}

/* why p's connection (or the last sip_net_connect that returned false) failed */
const char *
sip_net_conn_error(const Peer *p)
{
	if (p->transport == TRANSPORT_TCP && p->conn >= 0 && p->conn < n_conns_max && conns[p->conn].gen == p->conn_gen &&
		conns[p->conn].error[0])
		return conns[p->conn].error;
	return connect_error[0] ? connect_error : "closed";
}

/* is the TCP connection p names still open (not closed, not reused for another peer)? */
bool
sip_net_conn_alive(const Peer *p)
{
	return p->transport == TRANSPORT_TCP && p->conn >= 0 && p->conn < n_conns_max && conns[p->conn].fd >= 0 &&
		conns[p->conn].gen == p->conn_gen;
}

/* read what a TCP peer sent and handle each complete message (framed by Content-Length) */
static void
read_conn(int i)
{
	Conn	   *c = &conns[i];
	char		buf[16384];

	for (int k = 0; k < 64 && c->fd >= 0; k++)
	{
		ssize_t		n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
		{
			close_conn(i);
			return;
		}
		if (n < 0)
			break;
		c->last_active = sip_now;
		sbuf_append(&c->in, buf, n);
		if (c->in.overflow)
		{
			sip_count(C_PARSE_ERRORS, 1);
			sip_log_limited(LOG_TCP, "closing TCP connection from %s:%d: message over vms.sip_max_message", c->peer.ip, c->peer.port);
			close_conn(i);
			return;
		}
		for (;;)
		{
			size_t		skip = 0;
			long		len;

			/* CRLF keep-alive pings (RFC 5626) between messages, then one message */
			len = sip_stream_next(c->in.data, c->in.len, (size_t) vms_sip_max_message, &skip);
			if (skip > 0)
			{
				memmove(c->in.data, c->in.data + skip, c->in.len - skip);
				c->in.len -= skip;
				c->in.data[c->in.len] = '\0';
			}
			if (len == 0)
				break;
			sip_count(C_IN, 1);
			if (len < 0)
			{
				sip_count(C_PARSE_ERRORS, 1);
				sip_log_limited(LOG_TCP, "closing TCP connection from %s:%d: message cannot be framed", c->peer.ip, c->peer.port);
				close_conn(i);
				return;
			}
			hooks.before_messages();
			{
				char	   *msg = palloc(len + 1);
				Peer		peer = c->peer;

				memcpy(msg, c->in.data, len);
				msg[len] = '\0';
				memmove(c->in.data, c->in.data + len, c->in.len - len);
				c->in.len -= len;
				c->in.data[c->in.len] = '\0';
				hooks.message(msg, len, &peer);
				pfree(msg);
			}
			if (c->fd < 0)
				return;
		}
	}
}

void
sip_net_expire(void)
{
	for (int i = 0; i < n_conns_max; i++)
		if (conns[i].fd >= 0 && sip_now > TimestampTzPlusMilliseconds(conns[i].last_active, TCP_IDLE_S * 1000L))
			close_conn(i);
}
void
sip_net_drain(void)
{
	struct epoll_event evs[64];
	int			n = epoll_wait(epoll_fd, evs, 64, 0);

	for (int i = 0; i < n; i++)
	{
		uint64		tag = evs[i].data.u64;

		if (tag == (uint64) -1)
			read_udp();
		else if (tag == (uint64) -2)
			accept_conns();
		else if (tag < (uint64) n_conns_max && conns[tag].fd >= 0)
		{
			if (conns[tag].connecting)
				connect_done((int) tag);
			else
				read_conn((int) tag);
		}
	}
	if (n_connecting > 0)
		connect_expire();
}


/* after an error: what the batch queued for sendmmsg() is not sent */
void
sip_net_abort_batch(void)
{
	batching = false;
	n_out = 0;
}

/* a To tag stable across retransmissions of one request (and the tag of the dialog it may start) */
void
sip_to_tag(const char *call_id, char *tag, size_t len)
{
	uint32		h = 2166136261u;

	for (const char *p = call_id; *p; p++)
		h = (h ^ (unsigned char) *p) * 16777619u;
	if (len >= 12)
	{
		/* "vms%08x" without printf: every answer has one */
		static const char hex[] = "0123456789abcdef";

		memcpy(tag, "vms", 3);
		for (int i = 0; i < 8; i++)
			tag[3 + i] = hex[(h >> (28 - 4 * i)) & 15];
		tag[11] = '\0';
	}
	else
		snprintf(tag, len, "vms%08x", h);
}

void
sip_answer(const SipIn *in, const Peer *peer, int code, const char *reason, const char *extra)
{
	char		tag[16];

	sip_to_tag(in->call_id, tag, sizeof(tag));
	if (!sip_answer_text(in, code, reason, tag, peer->ip, peer->port, extra, sip_scratch()))
		return;
	sip_send(peer, sip_scratch()->data, sip_scratch()->len);
}

/* the address a peer can reach us at, as seen from its side of the route */
const char *
sip_local_ip_for(const Peer *p)
{
	static char cached_for[64],
				cached[64];
	int			fd;
	struct sockaddr_in me;
	socklen_t	len = sizeof(me);

	if (strcmp(sip_local_ip(), "127.0.0.1") != 0 && strcmp(sip_local_ip(), "0.0.0.0") != 0)
		return sip_local_ip();
	if (strcmp(cached_for, p->ip) == 0)
		return cached;
	strlcpy(cached, "127.0.0.1", sizeof(cached));
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *) &p->addr, p->addrlen) == 0 &&
		getsockname(fd, (struct sockaddr *) &me, &len) == 0)
		inet_ntop(AF_INET, &me.sin_addr, cached, sizeof(cached));
	if (fd >= 0)
		close(fd);
	strlcpy(cached_for, p->ip, sizeof(cached_for));
	return cached;
}

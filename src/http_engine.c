/*-------------------------------------------------------------------------
 *
 * http_engine.c
 *	  curl_multi driven by PostgreSQL's WaitEventSet.
 *
 * curl tells us which sockets it wants to watch (socket callback) and when
 * it next needs a timeout call (timer callback).  The sockets live in an
 * epoll set of our own, kept current from the callback, so a wait costs
 * nothing per idle connection even with thousands in flight.  The worker
 * waits on a WaitEventSet of its latch, postmaster death and that epoll
 * descriptor (readable whenever one of its sockets is ready), and wakes for
 * whichever comes first: a reply, a timeout, or a caller's COMMIT.  No
 * request blocks another; a slow peer costs nothing but a socket.
 *
 * At most payments.max_connections requests are handed to curl at a time;
 * the rest wait here, first come first served, and start as transfers
 * finish.  (Left to curl, they waited in its list of pending transfers,
 * which libcurl 7.88 walks in full each time a finished transfer is
 * removed: with a backlog, a cost per reply that grew with the backlog;
 * and their timeout ran while they waited, so a request could time out
 * unsent and spend an attempt.  A request's clock, its timeout and its
 * exchange row's duration now start when it has a connection.)
 *
 * Timeouts are the engine's, not curl's, and count only the time the
 * worker was here to drive the transfers.  curl moves a transfer on only
 * when called, and the worker calls it between its transactions; a
 * transaction that waits seconds (a lock, a slow disk) left curl to find,
 * when next called, deadlines passed, and to fail transfers whose replies
 * sat unread in their sockets (or whose TLS handshakes never got their
 * turn): answered payments went to "unknown" and were looked up.  Now the
 * time the worker spends away beyond a short allowance is not counted, and
 * a request expires only after the replies waiting in the sockets have
 * been read.
 *
 * Memory: everything curl touches from callbacks is malloc'd, so that an
 * ERROR can never longjmp out of a half-updated curl structure.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "http_engine.h"
#include "shmem.h"

#define MAX_READY_EVENTS 256

/* time away from the engine that still counts towards timeouts */
#define ABSENCE_ALLOWANCE_US 100000
/* a request not written by then (no connection) fails as not sent */
#define CONNECT_LIMIT_MS 10000L

struct HttpEngine
{
	CURLM	   *multi;
	int			running;
	int			in_flight;		/* handed to curl or waiting */
	int			active;			/* handed to curl */
	int			max_active;		/* payments.max_connections */
	long		timer_ms;		/* -1: no timer */
	uint64		timer_set_us;
	int			epfd;			/* the sockets curl watches */
	WaitEventSet *wes;			/* latch, postmaster death, epfd */
	dlist_head	waiting;		/* requests not yet handed to curl */
	dlist_head	transfers;		/* requests handed to curl */
	dlist_head	done;
	bool		inside;			/* in http_engine_wait */
	uint64		left_us;		/* when http_engine_wait last returned */
	uint64		absent_us;		/* time away beyond the allowance, in all */
};

#define CHECK_CURLM(call) \
	do { \
		CURLMcode _mc = (call); \
		if (_mc != CURLM_OK) \
			ereport(ERROR, \
					(errcode(ERRCODE_SYSTEM_ERROR), \
					 errmsg("libcurl multi call failed: %s", curl_multi_strerror(_mc)))); \
	} while (0)

/*
 * The engine's clock, for timeouts and curl's timer: monotonic, so that a
 * step of the system clock neither expires nor holds every request.
 */
static uint64
clock_us(void)
{
	static uint64 last = 0;
	struct timespec ts;

	/*
	 * It cannot fail with a valid clock and pointer; were it to, time stands
	 * still (timeouts wait) rather than an ERROR jumping out of a curl
	 * callback, which runs this too.
	 */
	if (clock_gettime(CLOCK_MONOTONIC, &ts) == 0)
		last = (uint64) ts.tv_sec * 1000000 + (uint64) ts.tv_nsec / 1000;
	return last;
}

/*
 * curl's socket callback: keep the epoll set current.  socketp remembers
 * whether the socket is already in the set (curl stores it for us).
 */
static int
socket_callback(CURL *easy pg_attribute_unused(), curl_socket_t fd, int what,
				void *userp, void *socketp)
{
	HttpEngine *engine = (HttpEngine *) userp;
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE)
	{
		/* curl forgets the socket (and its socketp) itself */
		if (socketp != NULL)
			(void) epoll_ctl(engine->epfd, EPOLL_CTL_DEL, fd, NULL);
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	ev.data.fd = fd;
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;
	/*
	 * The set and curl's note may disagree (a socket closed and its number
	 * reused): add what is missing, change what is there.  Any other
	 * failure makes curl fail the multi handle, and the worker restarts.
	 */
	if (epoll_ctl(engine->epfd, socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0 &&
		!(errno == (socketp ? ENOENT : EEXIST) &&
		  epoll_ctl(engine->epfd, socketp ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev) == 0))
		return -1;
	if (socketp == NULL && curl_multi_assign(engine->multi, fd, engine) != CURLM_OK)
		return -1;
	return 0;
}

/* curl's timer callback: remember when curl wants to be called back. */
static int
timer_callback(CURLM *multi pg_attribute_unused(), long timeout_ms, void *userp)
{
	HttpEngine *engine = (HttpEngine *) userp;

	engine->timer_ms = timeout_ms;
	engine->timer_set_us = clock_us();
	return 0;
}

/*
 * curl's pre-request callback, run each time it is about to send the
 * request: once only.  When a reused connection dies after the request was
 * written and before any reply, curl would send it again on a new
 * connection, on its own, a second payment the gateway may take; instead
 * the transfer fails, and it is unknown (classify: it was written), to be
 * looked up as any other.
 */
static int
prereq_callback(void *userp, char *conn_primary_ip pg_attribute_unused(),
				char *conn_local_ip pg_attribute_unused(),
				int conn_primary_port pg_attribute_unused(),
				int conn_local_port pg_attribute_unused())
{
	HttpRequest *req = (HttpRequest *) userp;

	return ++req->sends > 1 ? CURL_PREREQFUNC_ABORT : CURL_PREREQFUNC_OK;
}

/* Append reply bytes, up to the cap. */
static size_t
write_callback(char *data, size_t size, size_t nmemb, void *userp)
{
	HttpRequest *req = (HttpRequest *) userp;
	size_t		n = size * nmemb;

	if (req->response_len + n > HTTP_MAX_RESPONSE)
	{
		req->response_too_large = true;
		return 0;				/* curl aborts with CURLE_WRITE_ERROR */
	}
	if (req->response_len + n + 1 > req->response_cap)
	{
		size_t		cap = Max(req->response_cap * 2, req->response_len + n + 1);
		char	   *grown = realloc(req->response, cap);

		if (grown == NULL)
			return 0;
		req->response = grown;
		req->response_cap = cap;
	}
	memcpy(req->response + req->response_len, data, n);
	req->response_len += n;
	req->response[req->response_len] = '\0';
	return n;
}

HttpEngine *
http_engine_create(int max_connections)
{
	HttpEngine *engine = calloc(1, sizeof(HttpEngine));

	if (engine == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	engine->multi = curl_multi_init();
	if (engine->multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not create a libcurl multi handle")));
	engine->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (engine->epfd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("could not create an epoll set: %m")));
	engine->wes = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(engine->wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(engine->wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(engine->wes, WL_SOCKET_READABLE, engine->epfd, NULL, NULL);
	engine->timer_ms = -1;
	engine->max_active = max_connections;
	dlist_init(&engine->waiting);
	dlist_init(&engine->transfers);
	dlist_init(&engine->done);
	engine->left_us = clock_us();
	CHECK_CURLM(curl_multi_setopt(engine->multi, CURLMOPT_SOCKETFUNCTION, socket_callback));
	CHECK_CURLM(curl_multi_setopt(engine->multi, CURLMOPT_SOCKETDATA, engine));
	CHECK_CURLM(curl_multi_setopt(engine->multi, CURLMOPT_TIMERFUNCTION, timer_callback));
	CHECK_CURLM(curl_multi_setopt(engine->multi, CURLMOPT_TIMERDATA, engine));
	/*
	 * Keep connections to the gateway open and reuse them, and open no more
	 * than max_connections (the engine hands curl no more requests than
	 * that at a time).
	 */
	CHECK_CURLM(curl_multi_setopt(engine->multi, CURLMOPT_MAXCONNECTS, (long) max_connections));
	CHECK_CURLM(curl_multi_setopt(engine->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) max_connections));
	CHECK_CURLM(curl_multi_setopt(engine->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) max_connections));
	return engine;
}

/* Tear down, abandoning whatever is in flight (the worker is exiting). */
void
http_engine_destroy(HttpEngine *engine)
{
	if (engine == NULL)
		return;
	curl_multi_cleanup(engine->multi);
	FreeWaitEventSet(engine->wes);
	close(engine->epfd);
	free(engine);
}

/* The time spent away from the engine (beyond the allowance) until now. */
static uint64
absence(HttpEngine *engine, uint64 now)
{
	if (!engine->inside && now > engine->left_us + ABSENCE_ALLOWANCE_US)
		return engine->absent_us + (now - engine->left_us - ABSENCE_ALLOWANCE_US);
	return engine->absent_us;
}

/* How long a request has run, not counting the worker's time away. */
static uint64
time_counted(HttpEngine *engine, HttpRequest *req, uint64 now)
{
	uint64		away = absence(engine, now) - req->absent_at_start_us;
	uint64		elapsed = now - req->clock_start_us;

	return elapsed > away ? elapsed - away : 0;
}

/* Start a set-up request's transfer; false if curl refused it. */
static bool
hand_to_curl(HttpEngine *engine, HttpRequest *req)
{
	req->started_us = now_us();
	req->clock_start_us = clock_us();
	req->absent_at_start_us = absence(engine, req->clock_start_us);
	if (curl_multi_add_handle(engine->multi, req->easy) != CURLM_OK)
		return false;
	engine->active++;
	dlist_push_tail(&engine->transfers, &req->node);
	return true;
}

/*
 * Free what curl held for a request that is over, wipe its body (it held
 * card data) and hand it back on the done list.
 */
static void
request_over(HttpEngine *engine, HttpRequest *req)
{
	req->duration_us = clock_us() - req->clock_start_us;
	curl_easy_cleanup(req->easy);
	req->easy = NULL;
	curl_slist_free_all(req->headers);
	req->headers = NULL;
	if (req->body)
		explicit_bzero(req->body, req->body_len);
	engine->in_flight--;
	dlist_push_tail(&engine->done, &req->node);
}

/* Take a transfer from curl, over (finished or expired). */
static void
transfer_over(HttpEngine *engine, HttpRequest *req)
{
	CHECK_CURLM(curl_multi_remove_handle(engine->multi, req->easy));
	engine->active--;
	request_over(engine, req);
}

/*
 * Hand waiting requests to curl while connections are free.  A request
 * curl refuses (out of memory) was never sent: it is over, as not sent.
 */
static void
start_waiting(HttpEngine *engine)
{
	while (engine->active < engine->max_active && !dlist_is_empty(&engine->waiting))
	{
		HttpRequest *req = dlist_container(HttpRequest, node,
										   dlist_pop_head_node(&engine->waiting));

		if (hand_to_curl(engine, req))
			continue;
		req->finished_us = req->started_us;
		req->curl_code = CURLE_FAILED_INIT;
		req->http_status = 0;
		req->outcome = HTTP_NOT_SENT;
		strlcpy(req->error, "could not start the HTTP request", sizeof(req->error));
		request_over(engine, req);
	}
}

#define SETOPT(opt, val) \
	do { if (curl_easy_setopt(easy, opt, val) != CURLE_OK) goto fail; } while (0)

/*
 * Start a POST of req->body to url.  Returns false (with req->error set)
 * if the request could not even be set up; nothing was sent then.
 */
bool
http_engine_add(HttpEngine *engine, HttpRequest *req, const char *url,
				const char *ca_file, long timeout_ms)
{
	CURL	   *easy = curl_easy_init();
	struct curl_slist *h;

	req->error[0] = '\0';
	if (easy == NULL)
	{
		strlcpy(req->error, "could not create a libcurl handle", sizeof(req->error));
		return false;
	}
	req->easy = easy;
	SETOPT(CURLOPT_URL, url);
	SETOPT(CURLOPT_PRIVATE, req);
	SETOPT(CURLOPT_POST, 1L);
	SETOPT(CURLOPT_POSTFIELDS, req->body);
	SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
	SETOPT(CURLOPT_WRITEFUNCTION, write_callback);
	SETOPT(CURLOPT_WRITEDATA, req);
	SETOPT(CURLOPT_ERRORBUFFER, req->error);
	/* no timeout of curl's: expire_overdue keeps them (see the header) */
	req->timeout_ms = timeout_ms;
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	req->sends = 0;
	SETOPT(CURLOPT_PREREQFUNCTION, prereq_callback);
	SETOPT(CURLOPT_PREREQDATA, req);
	/*
	 * HTTP/1.1, one request at a time on a connection: whether a failed
	 * request was written is then known (classify), and the body is copied
	 * only into curl's buffers, which its allocator wipes (curl_memory.c),
	 * not into HTTP/2's frame buffers, which it does not.
	 */
	SETOPT(CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_1_1);
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
	SETOPT(CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
	SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
	if (ca_file != NULL && ca_file[0] != '\0')
		SETOPT(CURLOPT_CAINFO, ca_file);
	h = curl_slist_append(NULL, "Content-Type: application/json");
	if (h == NULL)
		goto fail;
	req->headers = h;
	h = curl_slist_append(req->headers, "Expect:");
	if (h == NULL)
		goto fail;
	req->headers = h;
	SETOPT(CURLOPT_HTTPHEADER, req->headers);

	if (engine->active >= engine->max_active)
		dlist_push_tail(&engine->waiting, &req->node);
	else if (!hand_to_curl(engine, req))
		goto fail;
	engine->in_flight++;
	return true;

fail:
	if (req->error[0] == '\0')
		strlcpy(req->error, "could not set up the HTTP request", sizeof(req->error));
	curl_easy_cleanup(easy);
	req->easy = NULL;
	if (req->headers)
		curl_slist_free_all(req->headers);
	req->headers = NULL;
	return false;
}

/*
 * Whether the request was written (curl's pretransfer time is set when it
 * is), so that it may have reached the gateway.
 */
static bool
request_written(HttpRequest *req)
{
	curl_off_t	pretransfer = 0;

	if (curl_easy_getinfo(req->easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer) != CURLE_OK)
		return true;			/* not known: it may have been sent */
	return pretransfer > 0;
}

/*
 * Decide whether a failed transfer could have reached the peer: once the
 * request was written it may have arrived, whatever failed after (a reply
 * that never came, a new connection curl then could not make, its send
 * refused by prereq_callback); before, nothing was sent (DNS, connect and
 * TLS failures, a timeout while connecting).
 */
static HttpOutcome
classify(HttpRequest *req)
{
	if (req->curl_code == CURLE_OK)
		return HTTP_COMPLETED;
	return request_written(req) ? HTTP_UNKNOWN : HTTP_NOT_SENT;
}

/* Let curl run its timers and start transfers waiting for a connection. */
static void
run_timeouts(HttpEngine *engine)
{
	engine->timer_ms = -1;
	CHECK_CURLM(curl_multi_socket_action(engine->multi, CURL_SOCKET_TIMEOUT, 0,
										 &engine->running));
}

/*
 * Move finished transfers to the done list and start waiting requests in
 * their place; returns how many finished.  All of curl's messages are read
 * before any handle is removed: removing one walks the messages still
 * unread.
 */
static int
collect_done(HttpEngine *engine)
{
	CURLMsg    *msg;
	int			left;
	int			ndone = 0;
	dlist_head	finished;
	dlist_mutable_iter it;

	dlist_init(&finished);
	while ((msg = curl_multi_info_read(engine->multi, &left)) != NULL)
	{
		HttpRequest *req = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		if (curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req) != CURLE_OK ||
			req == NULL)
			elog(ERROR, "payments: finished transfer has no owner");
		req->curl_code = msg->data.result;
		req->finished_us = now_us();
		dlist_delete(&req->node);	/* from the transfers */
		dlist_push_tail(&finished, &req->node);
	}
	dlist_foreach_modify(it, &finished)
	{
		HttpRequest *req = dlist_container(HttpRequest, node, it.cur);

		dlist_delete(&req->node);
		if (curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->http_status) != CURLE_OK)
			req->http_status = 0;
		req->outcome = classify(req);
		if (req->error[0] == '\0' && req->curl_code != CURLE_OK)
			strlcpy(req->error, curl_easy_strerror(req->curl_code), sizeof(req->error));
		if (req->response_too_large)
			strlcpy(req->error, "reply larger than the 1 MB cap", sizeof(req->error));
		if (req->sends > 1)
			strlcpy(req->error, "the connection closed after the request was written, before any reply; it is not sent again",
					sizeof(req->error));
		transfer_over(engine, req);
		ndone++;
	}
	if (ndone > 0)
		start_waiting(engine);
	return ndone;
}

/*
 * The time a request may take so far, in ms, given the time it has been
 * counted: until it must have been written (connection and TLS handshake
 * made), then its timeout.
 */
static long
time_allowed(HttpRequest *req, long counted)
{
	long		connect_limit = Min(req->timeout_ms, CONNECT_LIMIT_MS);

	if (counted < connect_limit || connect_limit == req->timeout_ms || !request_written(req))
		return connect_limit;
	return req->timeout_ms;
}

/* The ms until the next request's time is up; -1 when none runs. */
static long
next_deadline_ms(HttpEngine *engine)
{
	uint64		now = clock_us();
	long		next = -1;
	dlist_iter	it;

	dlist_foreach(it, &engine->transfers)
	{
		HttpRequest *req = dlist_container(HttpRequest, node, it.cur);
		long		counted = (long) (time_counted(engine, req, now) / 1000);
		long		left = Max(time_allowed(req, counted) - counted, 0L);

		next = next < 0 ? left : Min(next, left);
	}
	return next;
}

/*
 * Fail the requests whose time is up (after the replies waiting in the
 * sockets were read): not sent if the connection was never made, else
 * unknown.  Returns how many.
 */
static int
expire_overdue(HttpEngine *engine)
{
	uint64		now = clock_us();
	int			nexpired = 0;
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &engine->transfers)
	{
		HttpRequest *req = dlist_container(HttpRequest, node, it.cur);
		long		counted = (long) (time_counted(engine, req, now) / 1000);
		long		allowed = time_allowed(req, counted);

		if (counted < allowed)
			continue;
		dlist_delete(&req->node);
		req->curl_code = CURLE_OPERATION_TIMEDOUT;
		req->finished_us = now_us();
		req->http_status = 0;
		req->outcome = classify(req);
		transfer_over(engine, req);
		/* after curl let go of the handle (and of the error buffer) */
		snprintf(req->error, sizeof(req->error),
				 req->outcome == HTTP_NOT_SENT ? "no connection to the gateway within %ld ms" :
				 "no reply from the gateway within %ld ms", allowed);
		nexpired++;
	}
	if (nexpired > 0)
		start_waiting(engine);
	return nexpired;
}

/*
 * Wait up to max_wait_ms for socket activity, curl's timer, a request's
 * deadline, or the latch, and let curl make progress.  *latch_set tells
 * whether the latch fired.
 */
void
http_engine_wait(HttpEngine *engine, long max_wait_ms, bool *latch_set)
{
	WaitEvent	events[3];
	int			n;
	long		timeout = max_wait_ms;
	long		deadline;
	int			freed;
	bool		sockets_ready = false;
	uint64		now = clock_us();

	*latch_set = false;
	/* the time away since the last call, beyond the allowance, is not counted */
	engine->absent_us = absence(engine, now);
	engine->inside = true;
	deadline = next_deadline_ms(engine);
	if (deadline >= 0)
		timeout = Min(timeout, deadline);
	if (engine->timer_ms >= 0)
	{
		long		elapsed = (long) ((clock_us() - engine->timer_set_us) / 1000);
		long		left = Max(engine->timer_ms - elapsed, 0L);

		timeout = Min(timeout, left);
	}

	n = WaitEventSetWait(engine->wes, timeout, events, lengthof(events), PG_WAIT_EXTENSION);
	for (int i = 0; i < n; i++)
	{
		if (events[i].events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			*latch_set = true;
		}
		if (events[i].events & WL_SOCKET_READABLE)
			sockets_ready = true;
	}

	/*
	 * With transfers running, look at the sockets even when only the latch
	 * was reported: a latch already set returns before the sockets are
	 * polled, and a reply waiting there must be read before anything
	 * expires.
	 */
	if (engine->active > 0)
		sockets_ready = true;

	/* drain the ready sockets without blocking, a batch at a time */
	while (sockets_ready)
	{
		struct epoll_event ready[MAX_READY_EVENTS];
		int			nready = epoll_wait(engine->epfd, ready, MAX_READY_EVENTS, 0);

		if (nready < 0)
		{
			if (errno == EINTR)
				continue;
			ereport(ERROR,
					(errcode_for_socket_access(),
					 errmsg("epoll_wait on the HTTP sockets failed: %m")));
		}
		for (int i = 0; i < nready; i++)
		{
			int			mask = 0;

			if (ready[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				mask |= CURL_CSELECT_IN;
			if (ready[i].events & EPOLLOUT)
				mask |= CURL_CSELECT_OUT;
			if (ready[i].events & EPOLLERR)
				mask |= CURL_CSELECT_ERR;
			CHECK_CURLM(curl_multi_socket_action(engine->multi, ready[i].data.fd, mask,
												 &engine->running));
		}
		sockets_ready = (nready == MAX_READY_EVENTS);
	}

	if (engine->timer_ms >= 0 &&
		(long) ((clock_us() - engine->timer_set_us) / 1000) >= engine->timer_ms)
		run_timeouts(engine);
	else if (n == 0 && engine->in_flight > 0)
		run_timeouts(engine);	/* a quiet second: let curl look at everything */

	/*
	 * A finished or expired transfer frees its connection; requests started
	 * in its place (payments.max_connections) begin only when curl is told
	 * so.
	 */
	freed = collect_done(engine);
	freed += expire_overdue(engine);
	if (freed > 0 && engine->in_flight > 0)
	{
		run_timeouts(engine);
		(void) collect_done(engine);
	}
	engine->inside = false;
	engine->left_us = clock_us();
}

/* Pop one finished request, or NULL. */
HttpRequest *
http_engine_next_done(HttpEngine *engine)
{
	if (dlist_is_empty(&engine->done))
		return NULL;
	return dlist_container(HttpRequest, node, dlist_pop_head_node(&engine->done));
}

int
http_engine_in_flight(HttpEngine *engine)
{
	return engine->in_flight;
}

/* Free a request's malloc'd buffers (the body is wiped first). */
void
http_request_release(HttpRequest *req)
{
	if (req->body)
	{
		explicit_bzero(req->body, req->body_len);
		free(req->body);
		req->body = NULL;
	}
	free(req->response);
	req->response = NULL;
	req->response_len = req->response_cap = 0;
}

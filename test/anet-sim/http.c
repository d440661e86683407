/*-------------------------------------------------------------------------
 *
 * http.c
 *		The API endpoint POST /xml/v1/request.api over libmicrohttpd, with
 *		injected latency and faults.  Latency never blocks a thread: the
 *		connection is suspended and a timer thread resumes it, so thousands
 *		of requests can be in flight at once.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fault.h"
#include "http.h"
#include "sim.h"

#define MAX_BODY	(1024 * 1024)

typedef struct Req
{
	char	   *body;
	size_t		len;
	size_t		cap;
	int			phase;			/* 0 reading, 1 suspended, 2 resumed */
	bool		too_large;
	char	   *reply;
	size_t		reply_len;
	FaultDecision f;
} Req;

/* ---- timer: resume suspended connections when due ---------------------- */

typedef struct Timer
{
	long long	due;
	struct MHD_Connection *conn;
} Timer;

static Timer *heap;
static int	nheap,
			capheap;
static pthread_mutex_t tlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tcond = PTHREAD_COND_INITIALIZER;
static pthread_t tthread;
static bool tstop;
static int	peak_suspended;

/* Largest number of connections suspended at once (latency, holds) */
int
http_peak_suspended(void)
{
	int			p;

	pthread_mutex_lock(&tlock);
	p = peak_suspended;
	pthread_mutex_unlock(&tlock);
	return p;
}

/* Monotonic milliseconds for timer deadlines */
static long long
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Push onto the min-heap of due times */
static bool
timer_add(struct MHD_Connection *c, int ms)
{
	int			i;

	pthread_mutex_lock(&tlock);
	if (nheap == capheap)
	{
		int			nc = capheap ? capheap * 2 : 1024;
		Timer	   *n = realloc(heap, nc * sizeof(Timer));

		if (n == NULL)
		{
			pthread_mutex_unlock(&tlock);
			return false;
		}
		heap = n;
		capheap = nc;
	}
	i = nheap++;
	if (nheap > peak_suspended)
		peak_suspended = nheap;
	heap[i].due = mono_ms() + ms;
	heap[i].conn = c;
	while (i > 0 && heap[(i - 1) / 2].due > heap[i].due)
	{
		Timer		t = heap[i];

		heap[i] = heap[(i - 1) / 2];
		heap[(i - 1) / 2] = t;
		i = (i - 1) / 2;
	}
	/*
	 * The timer thread sleeps until the earliest due time: it needs waking
	 * only when this one is now the earliest.  At a fixed latency a new
	 * request is almost never that, and a wake-up per request was a task
	 * switch each on the cores the benchmark shares.
	 */
	if (i == 0)
		pthread_cond_signal(&tcond);
	pthread_mutex_unlock(&tlock);
	return true;
}

/* Pop the earliest entry (tlock held) */
static Timer
timer_pop(void)
{
	Timer		top = heap[0];
	int			i = 0;

	heap[0] = heap[--nheap];
	for (;;)
	{
		int			l = 2 * i + 1,
					r = l + 1,
					s = i;

		if (l < nheap && heap[l].due < heap[s].due)
			s = l;
		if (r < nheap && heap[r].due < heap[s].due)
			s = r;
		if (s == i)
			break;
		{
			Timer		t = heap[i];

			heap[i] = heap[s];
			heap[s] = t;
		}
		i = s;
	}
	return top;
}

/* Timer thread body */
static void *
timer_main(void *arg)
{
	(void) arg;
	pthread_mutex_lock(&tlock);
	while (!tstop)
	{
		long long	now = mono_ms();

		if (nheap > 0 && heap[0].due <= now)
		{
			Timer		t = timer_pop();

			pthread_mutex_unlock(&tlock);
			MHD_resume_connection(t.conn);
			pthread_mutex_lock(&tlock);
			continue;
		}
		if (nheap > 0)
		{
			struct timespec ts;
			long long	wait = heap[0].due - now;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += wait / 1000;
			ts.tv_nsec += (wait % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000)
			{
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&tcond, &tlock, &ts);
		}
		else
			pthread_cond_wait(&tcond, &tlock);
	}
	pthread_mutex_unlock(&tlock);
	return NULL;
}

/* Start the resume timer thread */
void
http_timer_start(void)
{
	if (pthread_create(&tthread, NULL, timer_main, NULL) != 0)
	{
		fprintf(stderr, "anet-sim: cannot start timer thread\n");
		exit(1);
	}
}

/* Resume everything still suspended so the daemon can shut down */
void
http_release_held(void)
{
	pthread_mutex_lock(&tlock);
	while (nheap > 0)
	{
		Timer		t = timer_pop();

		MHD_resume_connection(t.conn);
	}
	pthread_mutex_unlock(&tlock);
}

/* Stop the timer thread */
void
http_timer_stop(void)
{
	pthread_mutex_lock(&tlock);
	tstop = true;
	pthread_cond_signal(&tcond);
	pthread_mutex_unlock(&tlock);
	pthread_join(tthread, NULL);
}

/* ---- responses --------------------------------------------------------- */

typedef struct Stream
{
	char	   *data;
	size_t		len;
	size_t		stop_at;		/* truncate: fail after this many bytes */
	int			chunk;
	int			chunk_ms;
} Stream;

/* Content reader for truncated and trickled bodies */
static ssize_t
stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	Stream	   *s = cls;
	size_t		n;

	if (pos >= s->stop_at)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	n = s->stop_at - pos;
	if (s->chunk > 0)
	{
		if (pos > 0)
			usleep((useconds_t) s->chunk_ms * 1000);
		if (n > (size_t) s->chunk)
			n = s->chunk;
	}
	if (n > max)
		n = max;
	memcpy(buf, s->data + pos, n);
	return (ssize_t) n;
}

/* Free a streamed body when MHD is done with it */
static void
stream_free(void *cls)
{
	Stream	   *s = cls;

	free(s->data);
	free(s);
}

/* Queue a response with the JSON content type */
static enum MHD_Result
queue(struct MHD_Connection *c, unsigned int status, struct MHD_Response *r,
	  const char *ctype)
{
	enum MHD_Result ret;

	if (r == NULL)
		return MHD_NO;
	if (MHD_add_response_header(r, "Content-Type", ctype) != MHD_YES)
	{
		MHD_destroy_response(r);
		return MHD_NO;
	}
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/*
 * F_REWRITE: the reply as the rule says.  A "body" replaces it whole
 * (bytes as given: no BOM added); else each "a.b.c" member of "set" is
 * set in the reply's JSON (objects made on the way; null removes it), and
 * the result sent with the usual BOM.  Returns a malloc'd body.
 */
static char *
rewrite_reply(const Req *q, size_t *len)
{
	const char *reply = q->reply ? q->reply : "";
	json_object *root;
	json_object *set;
	char	   *out;
	const char *text;

	if (q->f.body != NULL)
	{
		*len = strlen(q->f.body);
		return strdup(q->f.body);
	}
	if (strncmp(reply, "\xEF\xBB\xBF", 3) == 0)
		reply += 3;
	root = json_tokener_parse(reply);
	set = q->f.set_json ? json_tokener_parse(q->f.set_json) : NULL;
	if (root != NULL && set != NULL)
	{
		json_object_object_foreach(set, path, val)
		{
			json_object *o = root;
			char	   *copy = strdup(path);
			char	   *part = copy;
			char	   *dot;

			while (copy != NULL && (dot = strchr(part, '.')) != NULL)
			{
				json_object *next;

				*dot = '\0';
				if (!json_object_object_get_ex(o, part, &next) ||
					!json_object_is_type(next, json_type_object))
				{
					next = json_object_new_object();
					json_object_object_add(o, part, next);
				}
				o = next;
				part = dot + 1;
			}
			if (copy != NULL)
			{
				if (val == NULL)
					json_object_object_del(o, part);
				else
					json_object_object_add(o, part, json_object_get(val));
			}
			free(copy);
		}
	}
	text = root ? json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN) : reply;
	*len = 3 + strlen(text);
	out = malloc(*len + 1);
	if (out != NULL)
	{
		memcpy(out, "\xEF\xBB\xBF", 3);
		strcpy(out + 3, text);
	}
	json_object_put(set);
	json_object_put(root);
	return out;
}

/* Send the reply (or its faulty variant) for a processed request */
static enum MHD_Result
respond(struct MHD_Connection *c, Req *q)
{
	static const char *ctype = "application/json; charset=utf-8";
	struct MHD_Response *r;

	switch (q->f.kind)
	{
		case F_HTTP5XX:
			{
				static const char html[] =
					"<HTML><HEAD><TITLE>Service Unavailable</TITLE></HEAD><BODY>"
					"<H1>Service Unavailable</H1>The server is temporarily unable "
					"to service your request.</BODY></HTML>";

				r = MHD_create_response_from_buffer(strlen(html), (void *) html,
													MHD_RESPMEM_PERSISTENT);
				return queue(c, q->f.status >= 500 && q->f.status < 600 ?
							 (unsigned) q->f.status : 503, r, "text/html");
			}
		case F_MALFORMED:
			{
				/* a complete HTTP response whose JSON stops half-way */
				size_t		half = q->reply_len / 2;

				r = MHD_create_response_from_buffer(half, q->reply, MHD_RESPMEM_MUST_COPY);
				return queue(c, 200, r, ctype);
			}
		case F_TRUNCATED:
		case F_TRICKLE:
			{
				Stream	   *s = calloc(1, sizeof(Stream));

				if (s == NULL)
					return MHD_NO;
				s->data = q->reply;
				s->len = q->reply_len;
				q->reply = NULL;
				s->stop_at = q->f.kind == F_TRUNCATED ? s->len / 2 : s->len;
				if (q->f.kind == F_TRICKLE)
				{
					s->chunk = q->f.chunk_bytes;
					s->chunk_ms = q->f.chunk_ms;
				}
				r = MHD_create_response_from_callback(s->len, 4096, stream_read, s,
													  stream_free);
				if (r == NULL)
				{
					stream_free(s);
					return MHD_NO;
				}
				return queue(c, 200, r, ctype);
			}
		case F_REWRITE:
			{
				size_t		n;
				char	   *b = rewrite_reply(q, &n);

				if (b == NULL)
					return MHD_NO;
				r = MHD_create_response_from_buffer(n, b, MHD_RESPMEM_MUST_FREE);
				if (r == NULL)
				{
					free(b);
					return MHD_NO;
				}
				if (q->f.location != NULL &&
					MHD_add_response_header(r, "Location", q->f.location) != MHD_YES)
				{
					MHD_destroy_response(r);
					return MHD_NO;
				}
				return queue(c, q->f.status > 0 ? (unsigned) q->f.status : 200, r, ctype);
			}
		default:
			r = MHD_create_response_from_buffer(q->reply_len, q->reply,
												MHD_RESPMEM_MUST_FREE);
			if (r != NULL)
				q->reply = NULL;
			return queue(c, 200, r, ctype);
	}
}

/* Plain-text error response (404, 405, 413) */
static enum MHD_Result
simple(struct MHD_Connection *c, unsigned int status, const char *text)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text),
															 (void *) text,
															 MHD_RESPMEM_PERSISTENT);

	return queue(c, status, r, "text/plain");
}

/* Force an RST instead of a FIN when the socket is closed */
static void
arm_reset(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct linger lg = {1, 0};

	if (ci != NULL)
		if (setsockopt(ci->connect_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) != 0)
			perror("anet-sim: setsockopt(SO_LINGER)");
}

/* MHD access handler for the API daemon */
static enum MHD_Result
api_handler(void *cls, struct MHD_Connection *c, const char *url,
			const char *method, const char *version, const char *upload,
			size_t *upload_size, void **con_cls)
{
	Req		   *q = *con_cls;

	(void) cls;
	(void) version;
	if (q == NULL)
	{
		q = calloc(1, sizeof(Req));
		if (q == NULL)
			return MHD_NO;
		*con_cls = q;
		return MHD_YES;
	}
	if (*upload_size > 0)
	{
		if (q->len + *upload_size > MAX_BODY)
			q->too_large = true;
		else
		{
			if (q->len + *upload_size + 1 > q->cap)
			{
				size_t		nc = (q->len + *upload_size + 1) * 2;
				char	   *nb = realloc(q->body, nc);

				if (nb == NULL)
					return MHD_NO;
				q->body = nb;
				q->cap = nc;
			}
			memcpy(q->body + q->len, upload, *upload_size);
			q->len += *upload_size;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (q->phase == 1)
	{
		/* resumed by the timer */
		if (q->f.kind == F_HOLD)
			return MHD_NO;
		return respond(c, q);
	}
	if (strcmp(url, "/xml/v1/request.api") != 0)
		return simple(c, 404, "Not Found\n");
	if (strcmp(method, "POST") != 0)
		return simple(c, 405, "Method Not Allowed\n");
	if (q->too_large)
		return simple(c, 413, "Request Entity Too Large\n");

	fault_pick(&q->f, q->body, q->len);
	if (q->f.process)
	{
		q->reply = api_handle(q->body ? q->body : "", q->len, &q->reply_len);
		if (q->reply == NULL)
			return MHD_NO;
	}
	else if (q->f.kind != F_HTTP5XX)
	{
		/* unprocessed faults still need a body to mangle */
		q->reply = strdup("\xEF\xBB\xBF{\"messages\":{\"resultCode\":\"Error\",\"message\":[{\"code\":\"E00001\",\"text\":\"An error occurred during processing. Please try again.\"}]}}");
		if (q->reply == NULL)
			return MHD_NO;
		q->reply_len = strlen(q->reply);
	}
	if (q->f.kind == F_RESET)
	{
		arm_reset(c);
		return MHD_NO;
	}
	if (q->f.kind == F_HOLD || q->f.latency_ms > 0)
	{
		int			ms = q->f.kind == F_HOLD ? q->f.hold_ms : q->f.latency_ms;

		q->phase = 1;
		MHD_suspend_connection(c);
		if (!timer_add(c, ms))
		{
			MHD_resume_connection(c);
			return MHD_NO;
		}
		return MHD_YES;
	}
	return respond(c, q);
}

/* Free per-request state */
static void
completed(void *cls, struct MHD_Connection *c, void **con_cls,
		  enum MHD_RequestTerminationCode toe)
{
	Req		   *q = *con_cls;

	(void) cls;
	(void) c;
	(void) toe;
	if (q == NULL)
		return;
	free(q->body);
	free(q->reply);
	fault_decision_free(&q->f);
	free(q);
	*con_cls = NULL;
}

/* Read a whole file (PEM) into memory */
static char *
slurp(const char *path)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf;
	long		n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
	{
		fclose(f);
		return NULL;
	}
	buf = malloc(n + 1);
	if (buf == NULL || fread(buf, 1, n, f) != (size_t) n)
	{
		free(buf);
		fclose(f);
		return NULL;
	}
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/*
 * Each connection's memory pool (its headers and read buffer; bodies are
 * copied out as they arrive, replies have buffers of their own).  MHD
 * zeroes the pool between the requests of a connection: at its default
 * of 32 kB that memset was a fifth of the simulator's instructions per
 * request, on the cores the database under test shares with it.
 */
#define API_CONNECTION_MEMORY	8192

/* Start the API daemon on addr (TLS when cert and key are given) */
struct MHD_Daemon *
http_start_api(struct in_addr addr, int port, const char *cert, const char *key,
			   int threads)
{
	struct sockaddr_in sa;
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
		MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_TURBO;
	struct MHD_Daemon *d;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) port);
	sa.sin_addr = addr;
	if (cert != NULL)
	{
		char	   *c = slurp(cert),
				   *k = slurp(key);

		if (c == NULL || k == NULL)
		{
			fprintf(stderr, "anet-sim: cannot read %s or %s\n", cert, key);
			return NULL;
		}
		/* c and k stay allocated for the daemon's lifetime */
		d = MHD_start_daemon(flags | MHD_USE_TLS, (uint16_t) port, NULL, NULL,
							 api_handler, NULL,
							 MHD_OPTION_SOCK_ADDR, &sa,
							 MHD_OPTION_THREAD_POOL_SIZE, (unsigned int) threads,
							 MHD_OPTION_CONNECTION_LIMIT, (unsigned int) 20000,
							 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 120,
							 MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int) 4096,
							 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) API_CONNECTION_MEMORY,
							 MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
							 MHD_OPTION_HTTPS_MEM_CERT, c,
							 MHD_OPTION_HTTPS_MEM_KEY, k,
							 MHD_OPTION_HTTPS_PRIORITIES,
							 "NORMAL:-VERS-ALL:+VERS-TLS1.2",
							 MHD_OPTION_END);
		return d;
	}
	return MHD_start_daemon(flags, (uint16_t) port, NULL, NULL,
							api_handler, NULL,
							MHD_OPTION_SOCK_ADDR, &sa,
							MHD_OPTION_THREAD_POOL_SIZE, (unsigned int) threads,
							MHD_OPTION_CONNECTION_LIMIT, (unsigned int) 20000,
							MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 120,
							MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int) 4096,
							MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) API_CONNECTION_MEMORY,
							MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
							MHD_OPTION_END);
}

/* Start the control daemon on addr */
struct MHD_Daemon *
http_start_control(struct in_addr addr, int port)
{
	struct sockaddr_in sa;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t) port);
	sa.sin_addr = addr;
	return MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
							MHD_USE_ERROR_LOG, (uint16_t) port, NULL, NULL,
							control_handler, NULL,
							MHD_OPTION_SOCK_ADDR, &sa,
							MHD_OPTION_NOTIFY_COMPLETED, control_completed, NULL,
							MHD_OPTION_END);
}

/* The port a daemon actually listens on (for --port 0) */
int
http_port(struct MHD_Daemon *d)
{
	const union MHD_DaemonInfo *i = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);

	return i ? i->port : -1;
}

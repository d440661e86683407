/*-------------------------------------------------------------------------
 *
 * loadgen.c
 *		Minimal HTTP load generator for the simulator's benchmark: keeps a
 *		fixed number of POST requests in flight with curl_multi and prints
 *		throughput, latency percentiles and errors.
 *
 *		usage: loadgen URL BODYFILE CONCURRENCY SECONDS [EXPECT]
 *		EXPECT is a substring every reply must contain (default "Ok").
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <curl/curl.h>

typedef struct Slot
{
	CURL	   *easy;
	double		start;
	char		buf[4096];
	size_t		len;
} Slot;

static long long lat_hist[10001];	/* 0.1 ms buckets up to 1 s, last = more */

/* Monotonic seconds */
static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Keep the start of each reply (enough to check the result) */
static size_t
on_data(char *p, size_t sz, size_t n, void *ud)
{
	Slot	   *s = ud;
	size_t		len = sz * n;
	size_t		room = sizeof(s->buf) - 1 - s->len;

	memcpy(s->buf + s->len, p, len < room ? len : room);
	s->len += len < room ? len : room;
	s->buf[s->len] = '\0';
	return len;
}

/* Percentile from the histogram, in ms */
static double
pct(long long total, double p)
{
	long long	want = (long long) (total * p),
				acc = 0;

	for (int i = 0; i <= 10000; i++)
	{
		acc += lat_hist[i];
		if (acc > want)
			return i / 10.0;
	}
	return 1000.0;
}

/* Run the load for the given time and print the figures */
int
main(int argc, char **argv)
{
	const char *url,
			   *expect;
	char	   *body;
	long		blen;
	int			conc;
	double		secs,
				t0,
				end;
	FILE	   *f;
	CURLM	   *multi;
	Slot	   *slots;
	struct curl_slist *hdrs = NULL;
	long long	done = 0,
				errors = 0;
	int			running = 0,
				max_inflight = 0,
				inflight = 0;
	struct rlimit rl;

	if (argc < 5)
	{
		fprintf(stderr, "usage: loadgen URL BODYFILE CONCURRENCY SECONDS [EXPECT]\n");
		return 2;
	}
	url = argv[1];
	conc = atoi(argv[3]);
	secs = atof(argv[4]);
	expect = argc > 5 ? argv[5] : "Ok";
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
	{
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	f = fopen(argv[2], "rb");
	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (blen = ftell(f)) < 0 ||
		fseek(f, 0, SEEK_SET) != 0)
	{
		perror(argv[2]);
		return 2;
	}
	body = malloc(blen + 1);
	if (body == NULL || fread(body, 1, blen, f) != (size_t) blen)
		return 2;
	fclose(f);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return 2;
	multi = curl_multi_init();
	slots = calloc(conc, sizeof(Slot));
	if (multi == NULL || slots == NULL)
		return 2;
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	if (hdrs == NULL ||
		curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) conc) != CURLM_OK ||
		curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) conc) != CURLM_OK)
		return 2;
	t0 = now();
	end = t0 + secs;
	for (int i = 0; i < conc; i++)
	{
		Slot	   *s = &slots[i];

		s->easy = curl_easy_init();
		if (s->easy == NULL ||
			curl_easy_setopt(s->easy, CURLOPT_URL, url) != CURLE_OK ||
			curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, body) != CURLE_OK ||
			curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE, blen) != CURLE_OK ||
			curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, hdrs) != CURLE_OK ||
			curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK ||
			curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s) != CURLE_OK ||
			curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s) != CURLE_OK ||
			curl_easy_setopt(s->easy, CURLOPT_TIMEOUT, 30L) != CURLE_OK ||
			curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
			curl_multi_add_handle(multi, s->easy) != CURLM_OK)
			return 2;
		s->start = now();
		inflight++;
	}
	max_inflight = inflight;
	while (inflight > 0)
	{
		CURLMsg    *m;
		int			left;

		if (curl_multi_perform(multi, &running) != CURLM_OK)
			return 1;
		while ((m = curl_multi_info_read(multi, &left)) != NULL)
		{
			Slot	   *s;
			long		code = 0;
			double		t = now();
			int			b;

			if (m->msg != CURLMSG_DONE)
				continue;
			if (curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &s) != CURLE_OK)
				return 1;
			if (curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK)
				code = 0;
			if (m->data.result != CURLE_OK || code != 200 || strstr(s->buf, expect) == NULL)
				errors++;
			done++;
			b = (int) ((t - s->start) * 10000);
			lat_hist[b > 10000 ? 10000 : b]++;
			if (curl_multi_remove_handle(multi, s->easy) != CURLM_OK)
				return 1;
			inflight--;
			if (t < end)
			{
				s->len = 0;
				s->start = t;
				if (curl_multi_add_handle(multi, s->easy) != CURLM_OK)
					return 1;
				inflight++;
			}
		}
		if (inflight > max_inflight)
			max_inflight = inflight;
		if (curl_multi_poll(multi, NULL, 0, 100, NULL) != CURLM_OK)
			return 1;
	}
	{
		double		el = now() - t0;

		printf("requests=%lld errors=%lld seconds=%.2f req_per_s=%.0f "
			   "concurrency=%d max_in_flight=%d p50_ms=%.1f p99_ms=%.1f\n",
			   done, errors, el, done / el, conc, max_inflight, pct(done, 0.5),
			   pct(done, 0.99));
	}
	for (int i = 0; i < conc; i++)
		curl_easy_cleanup(slots[i].easy);
	curl_multi_cleanup(multi);
	curl_slist_free_all(hdrs);
	curl_global_cleanup();
	return errors > 0 ? 1 : 0;
}

/*-------------------------------------------------------------------------
 *
 * main.c
 *		anet-sim: a local simulator of the Authorize.Net JSON API for tests
 *		and benchmarks.  Parses options, starts the daemons, prints the
 *		ready line, and waits for SIGTERM/SIGINT.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "fault.h"
#include "http.h"
#include "sim.h"
#include "validate.h"

/* Print usage and exit */
static void
usage(void)
{
	fprintf(stderr,
			"usage: anet-sim --port P --control-port C [options]\n"
			"  --listen ADDR                   IPv4 address of every port (default 127.0.0.1)\n"
			"  --tls-cert FILE --tls-key FILE  serve the API port over HTTPS (TLS 1.2)\n"
			"  --tls-port T                    with a cert: HTTPS on T, plain HTTP stays on P\n"
			"  --no-bom                        replies without the UTF-8 BOM\n"
			"  --settle-interval SECONDS       settle automatically (default: only on command)\n"
			"  --threads N                     API worker threads (default 4)\n"
			"  --merchant LOGIN:KEY            add a merchant (repeatable)\n"
			"  --refund-window-days N          default 180\n"
			"  --auth-expiry-days N            default 30\n"
			"  --nonce-ttl SECONDS             opaqueData nonce lifetime (default 900)\n"
			"  --latency-ms N                  fixed latency from the start\n");
	exit(2);
}

/* Raise the open-file limit so thousands of connections fit */
static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			perror("anet-sim: setrlimit");
	}
}

/* Parse options, start the daemons, wait for a stop signal */
int
main(int argc, char **argv)
{
	int			port = -1,
				cport = -1,
				tls_port = -1,
				latency = 0;
	const char *cert = NULL,
			   *key = NULL,
			   *listen_addr = "127.0.0.1";
	struct in_addr addr;
	struct MHD_Daemon *api,
			   *tls = NULL,
			   *ctl;
	sigset_t	set;
	int			sig;

	sim_config_defaults();
	state_init();
	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--no-bom") == 0)
		{
			sim.cfg.bom = false;
			continue;
		}
		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "--listen") == 0)
			listen_addr = v;
		else if (strcmp(a, "--port") == 0)
			port = atoi(v);
		else if (strcmp(a, "--control-port") == 0)
			cport = atoi(v);
		else if (strcmp(a, "--tls-port") == 0)
			tls_port = atoi(v);
		else if (strcmp(a, "--tls-cert") == 0)
			cert = v;
		else if (strcmp(a, "--tls-key") == 0)
			key = v;
		else if (strcmp(a, "--settle-interval") == 0)
			sim.cfg.settle_interval = atoi(v);
		else if (strcmp(a, "--threads") == 0)
			sim.cfg.threads = atoi(v) > 0 ? atoi(v) : 1;
		else if (strcmp(a, "--refund-window-days") == 0)
			sim.cfg.refund_window_days = atoi(v);
		else if (strcmp(a, "--auth-expiry-days") == 0)
			sim.cfg.auth_expiry_days = atoi(v);
		else if (strcmp(a, "--nonce-ttl") == 0)
			sim.cfg.nonce_ttl = atoi(v);
		else if (strcmp(a, "--latency-ms") == 0)
			latency = atoi(v);
		else if (strcmp(a, "--merchant") == 0)
		{
			char		buf[128];
			char	   *colon;

			snprintf(buf, sizeof(buf), "%s", v);
			colon = strchr(buf, ':');
			if (colon == NULL)
				usage();
			*colon = '\0';
			if (merchant_add(buf, colon + 1) < 0)
				usage();
		}
		else
			usage();
	}
	if (port < 0 || cport < 0 || (cert == NULL) != (key == NULL) ||
		(tls_port >= 0 && cert == NULL) || inet_pton(AF_INET, listen_addr, &addr) != 1)
		usage();

	/* signals are taken synchronously by main; threads inherit the mask */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();

	validate_init();
	cim_reset();
	webhook_init();
	http_timer_start();
	settle_start_clock();
	if (latency > 0)
	{
		json_object *b = json_object_new_object();
		int			st;

		jadd(b, "fixedMs", json_object_new_int(latency));
		json_object_put(fault_control("POST", "/latency", b, &st));
		json_object_put(b);
	}

	if (tls_port >= 0)
	{
		api = http_start_api(addr, port, NULL, NULL, sim.cfg.threads);
		tls = http_start_api(addr, tls_port, cert, key, sim.cfg.threads);
		if (tls == NULL)
		{
			fprintf(stderr, "anet-sim: cannot listen on %s:%d (TLS)\n", listen_addr, tls_port);
			return 1;
		}
	}
	else
		api = http_start_api(addr, port, cert, key, sim.cfg.threads);
	if (api == NULL)
	{
		fprintf(stderr, "anet-sim: cannot listen on %s:%d\n", listen_addr, port);
		return 1;
	}
	ctl = http_start_control(addr, cport);
	if (ctl == NULL)
	{
		fprintf(stderr, "anet-sim: cannot listen on %s:%d (control)\n", listen_addr, cport);
		return 1;
	}
	if (tls)
		printf("anet-sim ready api=%d control=%d tls=%d\n", http_port(api),
			   http_port(ctl), http_port(tls));
	else
		printf("anet-sim ready api=%d control=%d\n", http_port(api), http_port(ctl));
	fflush(stdout);

	if (sigwait(&set, &sig) != 0)
		return 1;
	http_release_held();
	MHD_stop_daemon(ctl);
	if (tls)
		MHD_stop_daemon(tls);
	MHD_stop_daemon(api);
	http_timer_stop();
	webhook_shutdown();
	return 0;
}

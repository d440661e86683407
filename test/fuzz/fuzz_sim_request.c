/*-------------------------------------------------------------------------
 *
 * fuzz_sim_request.c
 *	  libFuzzer target: the simulator's request pipeline without HTTP.
 *
 * api_handle() (test/anet-sim/api.c) is the function the HTTP handler
 * of POST /xml/v1/request.api calls with the request body: JSON parse,
 * validation against the XSD order (validate.c), authentication and
 * dispatch to the API handlers.  The input is one request body, or
 * several separated by NUL bytes, handled in order on one simulator
 * state (so a capture or refund can find the transaction an earlier
 * request made); the state is reset after each input.  Two pieces are
 * not request bodies but what the tests do through the control port
 * (control.c, which needs the HTTP daemon): "#settle" settles the batch
 * (POST /settle) and "#clock DAYS" (0..999) moves the clock forward
 * (POST /clock), so settled transactions, batch lists, refund windows
 * and expired authorizations are reached too.
 *
 * Checks, besides the sanitizers: every reply is one JSON object that
 * src/anet's own reply parser reads (the product must understand every
 * reply the simulator can give), and is valid UTF-8 as long as every
 * request of the input was (whatever the simulator keeps of a request and
 * sends back later must not be cut inside a character).
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anet_protocol.h"
#include "fuzz_check.h"
#include "sim.h"
#include "validate.h"

#define MAX_REQUESTS 8

/* FUZZ_SIM_PRINT=1 in the environment: print every reply (seed checks) */
static bool print_replies = false;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void) argc;
	(void) argv;
	/* as main.c sets up, without the HTTP daemons and webhook thread */
	sim_config_defaults();
	state_init();
	validate_init();
	cim_reset();
	state_reset(true);
	print_replies = getenv("FUZZ_SIM_PRINT") != NULL;
	return 0;
}

/* A control command instead of a request?  Then do it. */
static bool
control_command(const uint8_t *data, size_t size)
{
	if (size == 7 && memcmp(data, "#settle", 7) == 0)
	{
		pthread_mutex_lock(&sim.lock);
		json_object_put(settle_now());
		pthread_mutex_unlock(&sim.lock);
		return true;
	}
	if (size >= 8 && size <= 10 && memcmp(data, "#clock ", 7) == 0)
	{
		long long	days = 0;

		for (size_t i = 7; i < size; i++)
		{
			if (data[i] < '0' || data[i] > '9')
				return false;
			days = days * 10 + (data[i] - '0');
		}
		pthread_mutex_lock(&sim.lock);
		sim.clock_offset_ms += days * 86400 * 1000;
		pthread_mutex_unlock(&sim.lock);
		return true;
	}
	return false;
}

/* All request bodies of this input so far were valid UTF-8. */
static bool all_utf8;

static void
handle_one(const uint8_t *data, size_t size)
{
	char	   *body;
	char	   *reply;
	size_t		reply_len = 0;
	AnetReplyStatus status;

	if (control_command(data, size))
		return;
	/* exactly size bytes: ASan sees any over-read */
	body = malloc(size ? size : 1);
	if (body == NULL)
		return;
	memcpy(body, data, size);
	all_utf8 = all_utf8 && fuzz_valid_utf8(data, size);
	reply = api_handle(body, size, &reply_len);
	free(body);
	if (reply == NULL)
		return;					/* out of memory */
	if (print_replies)
		printf("%.*s\n", (int) reply_len, reply);
	FUZZ_ASSERT(reply_len > 0 && strlen(reply) == reply_len);
	FUZZ_ASSERT(anet_parse_reply_status(reply, reply_len, &status));
	FUZZ_ASSERT(status.result_code[0] != '\0' && status.message_code[0] != '\0');
	if (all_utf8 && !fuzz_valid_utf8((const unsigned char *) reply, reply_len))
	{
		fprintf(stderr, "reply is not valid UTF-8 though every request was: %.*s\n",
				(int) reply_len, reply);
		abort();
	}
	free(reply);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t		start = 0;
	int			n = 0;

	all_utf8 = true;

	for (size_t i = 0; i <= size && n < MAX_REQUESTS; i++)
	{
		if (i == size || data[i] == '\0')
		{
			handle_one(data + start, i - start);
			start = i + 1;
			n++;
		}
	}
	/*
	 * Forget everything, and number transactions from the start again
	 * (every slot is empty after the reset), so that an input names the
	 * same transIds (60000000001, ...) whenever it runs.
	 */
	state_reset(true);
	sim.ntxns = 0;
	sim.next_batch_id = 9000001;
	return 0;
}

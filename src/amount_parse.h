/*-------------------------------------------------------------------------
 *
 * amount_parse.h
 *	  The text grammar of pay_amount, without PostgreSQL.
 *
 * amount_io.c turns the statuses into its errors; the fuzz target
 * (test/fuzz/fuzz_amount_text.c) calls the same functions directly.
 * This file and amount_parse.c include no PostgreSQL header.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PAYMENTS_AMOUNT_PARSE_H
#define PAYMENTS_AMOUNT_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* Largest currency exponent (ISO 4217 uses 0..4). */
#define AMOUNT_MAX_EXPONENT		4

typedef enum AmountParseStatus
{
	AMOUNT_OK = 0,
	/* syntax: amount_parse_text */
	AMOUNT_EMPTY,				/* nothing but white space */
	AMOUNT_NOT_A_NUMBER,		/* NaN, inf, infinity */
	AMOUNT_TWO_SIGNS,
	AMOUNT_LETTERS_FOR_NUMBER,	/* letters where the number belongs */
	AMOUNT_POINT_WITHOUT_DIGIT, /* "12." */
	AMOUNT_NO_DIGITS,
	AMOUNT_GROUP_SEPARATOR,		/* "1,234.56" */
	AMOUNT_EXPONENT_NOTATION,	/* "1e3" */
	AMOUNT_SIGN_AFTER_NUMBER,	/* "12 -USD" */
	AMOUNT_NO_CURRENCY,
	AMOUNT_TRAILING_CHARACTERS,
	/* value: amount_digits_to_minor */
	AMOUNT_TOO_MANY_DECIMALS,
	AMOUNT_OUT_OF_RANGE
} AmountParseStatus;

/*
 * The parts of an amount's text.  The pointers point into the parsed
 * string; code is not checked against the currency table.
 */
typedef struct AmountText
{
	bool		negative;
	const char *code;
	int			code_len;
	const char *int_digits;
	int			int_len;
	const char *frac_digits;	/* NULL without a decimal point */
	int			frac_len;
} AmountText;

/* 10^exponent for every exponent a currency can have */
extern const uint64_t amount_pow10[AMOUNT_MAX_EXPONENT + 1];

extern AmountParseStatus amount_parse_text(const char *s, AmountText *out);
extern AmountParseStatus amount_digits_to_minor(const AmountText *t,
												int exponent, int64_t *out);

#endif

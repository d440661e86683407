/*-------------------------------------------------------------------------
 *
 * codes.h
 *		Authorize.Net message codes (I/E codes) and transaction reason codes
 *		with their texts and response-code classes (codes_gen.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANET_SIM_CODES_H
#define ANET_SIM_CODES_H

typedef struct CodeText
{
	const char *code;
	const char *text;			/* NULL when only the class is known */
	int			klass;			/* 1 approved, 2 declined, 3 error, 4 review */
} CodeText;

extern const CodeText code_texts[];

extern const char *code_text(const char *code);
extern const char *reason_text(int reason);
extern int	reason_class(int reason);

#endif

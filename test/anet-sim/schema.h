/*-------------------------------------------------------------------------
 *
 * schema.h
 *		Tables describing the XSD content models that requests are
 *		validated against (generated into schema_gen.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ANET_SIM_SCHEMA_H
#define ANET_SIM_SCHEMA_H

typedef enum XsBase
{
	XT_STRING,
	XT_DECIMAL,
	XT_INT,
	XT_LONG,
	XT_SHORT,
	XT_INTEGER,
	XT_BOOLEAN,
	XT_DATETIME,
	XT_DATE
} XsBase;

/* A simple type with its restriction facets flattened; -1 / NULL = unset */
typedef struct SimpleType
{
	const char *display;		/* datatype name used in validator messages */
	XsBase		base;
	int			min_length;
	int			max_length;
	int			nenums;
	const char *const *enums;
	const char *pattern;
	const char *min_inclusive;
	const char *max_inclusive;
	int			total_digits;
	int			fraction_digits;
} SimpleType;

/*
 * One particle of a sequence: an element (name != NULL) or a choice
 * (name == NULL) whose alternatives are nalts particles starting at alt.
 * maxOccurs -1 means unbounded.
 */
typedef struct Particle
{
	const char *name;
	int			min_occurs;
	int			max_occurs;
	int			complex_type;	/* index into schema_complex_types or -1 */
	int			simple_type;	/* index into schema_simple_types or -1 */
	int			alt;
	int			nalts;
} Particle;

typedef struct ComplexType
{
	const char *name;
	int			first;			/* first particle in schema_particles */
	int			count;
} ComplexType;

typedef struct RootElement
{
	const char *name;
	int			complex_type;
} RootElement;

extern const SimpleType schema_simple_types[];
extern const Particle schema_particles[];
extern const ComplexType schema_complex_types[];
extern const RootElement schema_roots[];
extern const int schema_nroots;
extern const int schema_nsimple;
extern const int schema_ncomplex;

#endif

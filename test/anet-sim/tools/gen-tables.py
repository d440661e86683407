#!/usr/bin/env python3
#
# gen-tables.py
#		Generate the simulator's C tables from the Authorize.Net reference
#		files: the XSD content models (schema_gen.c) and the response code
#		texts and classes (codes_gen.c).
#
# Usage: tools/gen-tables.py REFDIR OUTDIR
#   REFDIR holds AnetApiSchema.xsd, responseCodes.json, reason-code-classes.tsv
#
# The output is committed so that building the simulator needs neither the
# reference directory nor python.
#
import html
import json
import sys
import xml.etree.ElementTree as ET

XS = '{http://www.w3.org/2001/XMLSchema}'
NSNAME = 'AnetApi/xml/v1/schema/AnetApiSchema.xsd'
XSNAME = 'http://www.w3.org/2001/XMLSchema'

BUILTIN = {
	'string': 'XT_STRING', 'decimal': 'XT_DECIMAL', 'int': 'XT_INT',
	'long': 'XT_LONG', 'short': 'XT_SHORT', 'integer': 'XT_INTEGER',
	'boolean': 'XT_BOOLEAN', 'dateTime': 'XT_DATETIME', 'date': 'XT_DATE',
	'base64Binary': 'XT_STRING', 'anyURI': 'XT_STRING',
}


def cstr(s):
	if s is None:
		return 'NULL'
	return '"' + s.replace('\\', '\\\\').replace('"', '\\"') + '"'


def local(qname):
	return qname.split(':', 1)[1] if ':' in qname else qname


refdir, outdir = sys.argv[1], sys.argv[2]
root = ET.parse(refdir + '/AnetApiSchema.xsd').getroot()

named_simple = {}
named_complex = {}
for child in root:
	if child.tag == XS + 'simpleType':
		named_simple[child.get('name')] = child
	elif child.tag == XS + 'complexType':
		named_complex[child.get('name')] = child

# ---- simple types -------------------------------------------------------
simple_list = []		# dicts
simple_index = {}		# key -> index


def resolve_simple(node, display):
	"""Flatten a simpleType restriction chain into one facet set."""
	r = node.find(XS + 'restriction')
	if r is None:
		# xs:list / xs:union are not used by the XSD
		return {'base': 'XT_STRING', 'display': display}
	base = r.get('base')
	if base.startswith('xs:'):
		facets = {'base': BUILTIN.get(local(base), 'XT_STRING')}
	else:
		facets = dict(resolve_simple(named_simple[local(base)], display))
	facets['display'] = display
	enums = []
	for f in r:
		tag = f.tag[len(XS):]
		v = f.get('value')
		if tag == 'enumeration':
			enums.append(v)
		elif tag in ('minLength', 'maxLength', 'length', 'totalDigits',
					 'fractionDigits'):
			facets[tag] = int(v)
		elif tag in ('minInclusive', 'maxInclusive', 'pattern'):
			facets[tag] = v
	if enums:
		facets['enums'] = enums
	return facets


def simple_for_builtin(name):
	key = 'xs:' + name
	if key not in simple_index:
		simple_index[key] = len(simple_list)
		simple_list.append({'base': BUILTIN.get(name, 'XT_STRING'),
							'display': XSNAME + ':' + name})
	return simple_index[key]


def simple_for_named(name):
	key = 'anet:' + name
	if key not in simple_index:
		simple_index[key] = len(simple_list)
		simple_list.append(None)
		simple_list[simple_index[key]] = resolve_simple(
			named_simple[name], NSNAME + ':' + name)
	return simple_index[key]


def simple_for_inline(node):
	simple_list.append(resolve_simple(node, 'String'))
	return len(simple_list) - 1


# ---- complex types ------------------------------------------------------
complex_list = []		# [name, particles]
complex_index = {}


def particles_of(group, out):
	for p in group:
		tag = p.tag[len(XS):]
		if tag == 'element':
			out.append(element_particle(p))
		elif tag == 'choice':
			alts = []
			for e in p:
				if e.tag == XS + 'element':
					alts.append(element_particle(e))
				elif e.tag == XS + 'sequence':
					# not used by this XSD; flatten
					for e2 in e:
						alts.append(element_particle(e2))
			out.append({'choice': alts, 'min': occ(p.get('minOccurs')),
						'max': occ(p.get('maxOccurs'))})
		elif tag == 'sequence':
			particles_of(p, out)


def occ(v, default=1):
	if v is None:
		return default
	if v == 'unbounded':
		return -1
	return int(v)


def content_of(ct, out):
	for c in ct:
		tag = c.tag[len(XS):]
		if tag in ('sequence', 'choice', 'all'):
			if tag == 'choice':
				particles_of([c], out)
			else:
				particles_of(c, out)
		elif tag == 'complexContent':
			ext = c[0]
			base = local(ext.get('base'))
			if ext.tag == XS + 'extension':
				content_of(named_complex[base], out)
			content_of(ext, out)


def complex_for_named(name):
	if name not in complex_index:
		complex_index[name] = len(complex_list)
		entry = [name, None]
		complex_list.append(entry)
		parts = []
		content_of(named_complex[name], parts)
		entry[1] = parts
	return complex_index[name]


def complex_for_inline(node, name):
	idx = len(complex_list)
	entry = [name, None]
	complex_list.append(entry)
	parts = []
	content_of(node, parts)
	entry[1] = parts
	return idx


def element_particle(e):
	name = e.get('name')
	d = {'name': name, 'min': occ(e.get('minOccurs')),
		 'max': occ(e.get('maxOccurs')), 'ct': -1, 'st': -1}
	t = e.get('type')
	if t is not None:
		if t.startswith('xs:'):
			d['st'] = simple_for_builtin(local(t))
		elif local(t) in named_simple:
			d['st'] = simple_for_named(local(t))
		else:
			d['ct'] = complex_for_named(local(t))
	else:
		ict = e.find(XS + 'complexType')
		ist = e.find(XS + 'simpleType')
		if ict is not None:
			d['ct'] = complex_for_inline(ict, name)
		elif ist is not None:
			d['st'] = simple_for_inline(ist)
		else:
			d['st'] = simple_for_builtin('string')
	return d


roots = []
for child in root:
	if child.tag == XS + 'element':
		name = child.get('name')
		ict = child.find(XS + 'complexType')
		if ict is not None:
			roots.append((name, complex_for_inline(ict, name)))
		elif child.get('type'):
			roots.append((name, complex_for_named(local(child.get('type')))))

# ---- emit schema_gen.c --------------------------------------------------
o = []
o.append('/*-------------------------------------------------------------------------')
o.append(' *')
o.append(' * schema_gen.c')
o.append(" *\t\tContent models of Authorize.Net's XML schema, generated by")
o.append(' *\t\ttools/gen-tables.py.  Do not edit by hand; regenerate instead.')
o.append(' *')
o.append(' *-------------------------------------------------------------------------')
o.append(' */')
o.append("#include <stddef.h>\n")
o.append('#include "schema.h"')
o.append('')
enum_arrays = []
for i, s in enumerate(simple_list):
	if 'enums' in s:
		o.append('static const char *const enums_%d[] = {%s, NULL};' %
				 (i, ', '.join(cstr(v) for v in s['enums'])))
o.append('')
o.append('const SimpleType schema_simple_types[] = {')
for i, s in enumerate(simple_list):
	o.append('\t{%s, %s, %d, %d, %d, %s, %s, %s, %s, %d, %d},' % (
		cstr(s['display']), s['base'],
		s.get('minLength', s.get('length', -1)),
		s.get('maxLength', s.get('length', -1)),
		len(s.get('enums', [])),
		('enums_%d' % i) if 'enums' in s else 'NULL',
		cstr(s.get('pattern')), cstr(s.get('minInclusive')),
		cstr(s.get('maxInclusive')),
		s.get('totalDigits', -1), s.get('fractionDigits', -1)))
o.append('};')
o.append('')
# particles: flatten all, alternatives stored after their choice
plist = []
ctypes_out = []


for name, parts in complex_list:
	# top-level particles must be contiguous: emit them first, then alts
	top = list(parts)
	first = len(plist)
	# reserve slots for top-level particles
	for _ in top:
		plist.append(None)
	for k, p in enumerate(top):
		if 'choice' in p:
			alt_first = len(plist)
			for a in p['choice']:
				plist.append('\t{%s, %d, %d, %d, %d, 0, 0},' % (
					cstr(a['name']), a['min'], a['max'], a['ct'], a['st']))
			plist[first + k] = '\t{NULL, %d, %d, -1, -1, %d, %d},' % (
				p['min'], p['max'], alt_first, len(p['choice']))
		else:
			plist[first + k] = '\t{%s, %d, %d, %d, %d, 0, 0},' % (
				cstr(p['name']), p['min'], p['max'], p['ct'], p['st'])
	ctypes_out.append('\t{%s, %d, %d},' % (cstr(name), first, len(top)))

o.append('const Particle schema_particles[] = {')
o.extend(plist)
o.append('};')
o.append('')
o.append('const ComplexType schema_complex_types[] = {')
o.extend(ctypes_out)
o.append('};')
o.append('')
roots.sort()
o.append('const RootElement schema_roots[] = {')
for name, idx in roots:
	o.append('\t{%s, %d},' % (cstr(name), idx))
o.append('};')
o.append('')
o.append('const int schema_nroots = %d;' % len(roots))
o.append('const int schema_nsimple = %d;' % len(simple_list))
o.append('const int schema_ncomplex = %d;' % len(complex_list))
with open(outdir + '/schema_gen.c', 'w') as f:
	f.write('\n'.join(o) + '\n')

# ---- emit codes_gen.c ---------------------------------------------------
codes = json.load(open(refdir + '/responseCodes.json'))
classes = {}
for line in open(refdir + '/reason-code-classes.tsv'):
	if line.startswith('#') or not line.strip():
		continue
	f = line.rstrip('\n').split('\t')
	classes[f[0]] = int(f[1])
o = []
o.append('/*-------------------------------------------------------------------------')
o.append(' *')
o.append(' * codes_gen.c')
o.append(" *\t\tAuthorize.Net's response code texts and reason-code classes,")
o.append(' *\t\tgenerated by tools/gen-tables.py.')
o.append(' *')
o.append(' *-------------------------------------------------------------------------')
o.append(' */')
o.append('#include <stddef.h>\n')
o.append('#include "codes.h"')
o.append('')
o.append('const CodeText code_texts[] = {')
seen = set()
for c in codes:
	code = c['code']
	if code in seen:
		continue
	seen.add(code)
	text = html.unescape(c['text'])
	o.append('\t{%s, %s, %d},' % (cstr(code), cstr(text), classes.get(code, 0)))
for code, cls in sorted(classes.items(), key=lambda kv: int(kv[0])):
	if code not in seen:
		o.append('\t{%s, NULL, %d},' % (cstr(code), cls))
o.append('\t{NULL, NULL, 0}')
o.append('};')
with open(outdir + '/codes_gen.c', 'w') as f:
	f.write('\n'.join(o) + '\n')
print('roots=%d complex=%d simple=%d particles=%d codes=%d' % (
	len(roots), len(complex_list), len(simple_list), len(plist), len(seen)))

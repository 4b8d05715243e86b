/*
 * csv_reader.c — a forgiving CSV reader for ledger imports.
 *
 * COPY aborts a whole load at the first malformed line; an import must
 * instead report the bad line and keep the rest.  This reader returns one
 * row per record, (line_no, fields text[], error text), where error is set
 * and fields NULL for a record that cannot be read (bad encoding, too long,
 * unterminated quote).  It parses bytes: in UTF-8 and GB18030 the CSV
 * specials (",", "\"", CR, LF) never occur inside a multibyte character, so
 * splitting first and converting each field afterwards is safe.
 */
#include "postgres.h"

#include <sys/stat.h>

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"

#define CSV_MAX_FIELDS		256
#define CSV_MAX_RECORD		(1024 * 1024)
#define CSV_MAX_FILE		((Size) 1024 * 1024 * 1024)

typedef struct CsvOut
{
	ReturnSetInfo *rsinfo;
	int			encoding;
} CsvOut;

static void
emit_error(CsvOut *out, int64 line, const char *msg)
{
	Datum		values[3];
	bool		nulls[3] = {false, true, false};

	values[0] = Int64GetDatum(line);
	values[1] = (Datum) 0;
	values[2] = CStringGetTextDatum(msg);
	tuplestore_putvalues(out->rsinfo->setResult, out->rsinfo->setDesc, values, nulls);
	pfree(DatumGetPointer(values[2]));
}

/*
 * Emit one record.  fields[] point into scratch storage: validate the
 * encoding of each, convert to the server encoding, build the text[].
 */
static void
emit_record(CsvOut *out, int64 line, StringInfo *fields, int nfields)
{
	Datum	   *elems = palloc(sizeof(Datum) * nfields);
	Datum		values[3];
	bool		nulls[3] = {false, false, true};

	for (int i = 0; i < nfields; i++)
	{
		char	   *conv;

		if (!pg_verify_mbstr(out->encoding, fields[i]->data, fields[i]->len, true))
		{
			emit_error(out, line,
					   psprintf("field %d is not valid %s text", i + 1,
								pg_encoding_to_char(out->encoding)));
			pfree(elems);
			return;
		}
		conv = pg_any_to_server(fields[i]->data, fields[i]->len, out->encoding);
		elems[i] = CStringGetTextDatum(conv);
		if (conv != fields[i]->data)
			pfree(conv);		/* a 1 GB file must not keep every converted copy */
	}
	values[0] = Int64GetDatum(line);
	values[1] = PointerGetDatum(construct_array(elems, nfields, TEXTOID, -1, false, TYPALIGN_INT));
	values[2] = (Datum) 0;
	tuplestore_putvalues(out->rsinfo->setResult, out->rsinfo->setDesc, values, nulls);
	for (int i = 0; i < nfields; i++)
		pfree(DatumGetPointer(elems[i]));
	pfree(elems);
	pfree(DatumGetPointer(values[1]));
}

static void
parse_csv(CsvOut *out, const char *buf, Size len)
{
	StringInfo	fields[CSV_MAX_FIELDS];
	int			nfields = 0;
	int64		line = 1;
	int64		record_line = 1;
	Size		record_bytes = 0;
	bool		in_quotes = false;
	bool		field_started = false;	/* saw a char or quote in this field */
	bool		record_bad = false;
	const char *bad_reason = NULL;
	Size		pos = 0;

	for (int i = 0; i < CSV_MAX_FIELDS; i++)
		fields[i] = makeStringInfo();

	/* a UTF-8 byte order mark is not data */
	if (out->encoding == PG_UTF8 && len >= 3 &&
		(unsigned char) buf[0] == 0xEF && (unsigned char) buf[1] == 0xBB &&
		(unsigned char) buf[2] == 0xBF)
		pos = 3;

	for (;;)
	{
		bool		at_end = pos >= len;
		char		c = at_end ? '\n' : buf[pos];
		bool		end_record = false;

		CHECK_FOR_INTERRUPTS();

		/*
		 * A run of ordinary bytes goes in at once: in a quoted field every
		 * byte but '"', in an unquoted one every byte but the four specials.
		 * Byte by byte each would do the same (counted toward the record's
		 * size and its lines, appended unless the record is bad).  The run
		 * stops short of the byte that would take the record over 1 MB,
		 * which goes byte by byte below (it resyncs).
		 */
		if (!at_end && (in_quotes ? c != '"' : (c != ',' && c != '"' && c != '\r' && c != '\n')) &&
			(record_bad || record_bytes < CSV_MAX_RECORD))
		{
			Size		max_k = record_bad ? len - pos : Min(len - pos, CSV_MAX_RECORD - record_bytes);
			Size		k = 1;
			int64		nl = (c == '\n');

			if (in_quotes)
				while (k < max_k && buf[pos + k] != '"')
					nl += (buf[pos + k++] == '\n');
			else
				while (k < max_k && buf[pos + k] != ',' && buf[pos + k] != '"' &&
					   buf[pos + k] != '\r' && buf[pos + k] != '\n')
					k++;
			if (!record_bad)
				appendBinaryStringInfo(fields[nfields], buf + pos, (int) k);
			if (!in_quotes)
				field_started = true;
			line += nl;
			record_bytes += k;
			pos += k;
			continue;
		}

		if (at_end && in_quotes)
		{
			record_bad = true;
			bad_reason = "unterminated quoted field";
			end_record = true;
		}
		else if (in_quotes)
		{
			if (c == '"' && pos + 1 < len && buf[pos + 1] == '"')
			{
				appendStringInfoChar(fields[nfields], '"');
				pos++;
			}
			else if (c == '"')
				in_quotes = false;
			else
			{
				if (c == '\n')
					line++;
				if (!record_bad)
					appendStringInfoChar(fields[nfields], c);
			}
		}
		else if (c == '"' && !field_started)
		{
			in_quotes = true;
			field_started = true;
		}
		else if (c == ',')
		{
			if (nfields + 1 >= CSV_MAX_FIELDS)
			{
				record_bad = true;
				bad_reason = "record has more than 256 fields";
			}
			else
				nfields++;
			field_started = false;
		}
		else if (c == '\r' && pos + 1 < len && buf[pos + 1] == '\n')
			;					/* CRLF: the LF ends the record */
		else if (c == '\n')
			end_record = true;
		else
		{
			field_started = true;
			if (!record_bad)
				appendStringInfoChar(fields[nfields], c);
		}

		if (!end_record && ++record_bytes > CSV_MAX_RECORD && !record_bad)
		{
			/* runaway record (usually a stray quote): drop it, resync at next newline */
			record_bad = true;
			bad_reason = "record longer than 1 MB";
			in_quotes = false;
		}

		if (end_record)
		{
			bool		blank = (nfields == 0 && fields[0]->len == 0 && !field_started);

			if (record_bad)
				emit_error(out, record_line, bad_reason);
			else if (!blank)
				emit_record(out, record_line, fields, nfields + 1);
			for (int i = 0; i <= nfields && i < CSV_MAX_FIELDS; i++)
				resetStringInfo(fields[i]);
			nfields = 0;
			field_started = false;
			record_bad = false;
			in_quotes = false;
			record_bytes = 0;
			if (at_end)
				break;
			line++;
			record_line = line;
		}
		pos++;
	}
}

static int
resolve_encoding(text *enc_t, const char *buf, Size len)
{
	char	   *name = text_to_cstring(enc_t);
	int			enc;

	if (pg_strcasecmp(name, "auto") == 0)
	{
		/* UTF-8 when the bytes are valid UTF-8, else the national GB18030 */
		if (len < (Size) PG_INT32_MAX && pg_verify_mbstr(PG_UTF8, buf, (int) len, true))
			return PG_UTF8;
		return PG_GB18030;
	}
	enc = pg_char_to_encoding(name);
	if (enc < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown encoding \"%s\"", name),
				 errhint("Use UTF8, GB18030, GBK or auto.")));
	return enc;
}

static Datum
csv_rows_from_buffer(FunctionCallInfo fcinfo, const char *buf, Size len, text *enc)
{
	CsvOut		out;

	InitMaterializedSRF(fcinfo, 0);
	out.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	out.encoding = resolve_encoding(enc, buf, len);
	parse_csv(&out, buf, len);
	return (Datum) 0;
}

/* vms.csv_rows(data bytea, encoding text DEFAULT 'auto') */
PG_FUNCTION_INFO_V1(csv_rows_bytea);
Datum
csv_rows_bytea(PG_FUNCTION_ARGS)
{
	bytea	   *data = PG_GETARG_BYTEA_PP(0);

	return csv_rows_from_buffer(fcinfo, VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data),
								PG_GETARG_TEXT_PP(1));
}

/*
 * vms.csv_rows_file(path text, encoding text DEFAULT 'auto'): reads a file on
 * the server, so it needs pg_read_server_files like COPY FROM a file.
 */
PG_FUNCTION_INFO_V1(csv_rows_file);
Datum
csv_rows_file(PG_FUNCTION_ARGS)
{
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(0));
	struct stat st;
	FILE	   *f;
	char	   *buf;
	Datum		result;

	if (!has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read server file \"%s\"", path),
				 errdetail("Only roles with privileges of pg_read_server_files may read files on the server."),
				 errhint("Pass the file's content as bytea to vms.ledger_import() instead.")));

	f = AllocateFile(path, PG_BINARY_R);
	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\" for reading: %m", path)));
	if (fstat(fileno(f), &st) != 0)
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not stat file \"%s\": %m", path)));
	if ((Size) st.st_size > CSV_MAX_FILE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("file \"%s\" is too large to import", path),
				 errdetail("The file has %lld bytes; the limit is 1 GB.", (long long) st.st_size),
				 errhint("Split the file and import the parts.")));
	buf = palloc_extended(st.st_size + 1, MCXT_ALLOC_HUGE);
	if (st.st_size > 0 && fread(buf, 1, st.st_size, f) != (size_t) st.st_size)
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not read file \"%s\": %m", path)));
	FreeFile(f);

	result = csv_rows_from_buffer(fcinfo, buf, st.st_size, PG_GETARG_TEXT_PP(1));
	pfree(buf);
	return result;
}

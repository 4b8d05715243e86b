/*
 * vqd_cli — run the vms video quality diagnosis on one source.
 *
 *   vqd_cli [--profile normal] [--frames N] [--seconds S] [--timeout-ms T]
 *           [--connect-timeout-ms T] [--read-timeout-ms T]
 *           [--set name=value]... [--baseline file.jpg] [--snapshot out.jpg]
 *           [--info] SOURCE
 *   vqd_cli --thresholds      print every threshold (markdown table)
 *
 * Prints one line per check: check_name TAB metric TAB abnormal(t|f) TAB detail
 * (metric and abnormal are empty when the check was not evaluated).
 * Exit status 0 even when a check is abnormal; 1 on an internal failure;
 * 2 on a usage error.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vqd.h"

static void
usage(void)
{
	fprintf(stderr,
			"usage: vqd_cli [--profile strict|normal|loose] [--frames N] [--seconds S]\n"
			"               [--timeout-ms T] [--connect-timeout-ms T] [--read-timeout-ms T]\n"
			"               [--width W] [--set threshold=value]... [--baseline image]\n"
			"               [--snapshot out.jpg] [--info] [--verbose] SOURCE\n"
			"       vqd_cli --thresholds\n");
	exit(2);
}

static double
num(const char *opt, const char *v, double lo, double hi)
{
	char	   *end;
	double		d;

	errno = 0;
	d = strtod(v, &end);
	if (errno || end == v || *end || !(d >= lo && d <= hi))
	{
		fprintf(stderr, "vqd_cli: %s: \"%s\" is not a number in [%g, %g]\n", opt, v, lo, hi);
		exit(2);
	}
	return d;
}

static unsigned char *
slurp(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	long		n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && n < 64L * 1024 * 1024 && fseek(f, 0, SEEK_SET) == 0)
	{
		buf = malloc(n ? n : 1);
		if (buf && fread(buf, 1, n, f) != (size_t) n)
		{
			free(buf);
			buf = NULL;
		}
		*len = n;
	}
	fclose(f);
	return buf;
}

static void
print_thresholds(void)
{
	printf("| threshold | check | unit | strict | normal | loose | meaning |\n");
	printf("|---|---|---|---|---|---|---|\n");
	for (int i = 0; i < vqd_threshold_count(); i++)
	{
		const vqd_threshold_def *d = vqd_threshold_info(i);

		printf("| `%s` | %s | %s | %g | %g | %g | %s |\n", d->name, vqd_check_name(d->check), d->unit,
			   d->strict, d->normal, d->loose, d->meaning);
	}
}

int
main(int argc, char **argv)
{
	vqd_options o;
	vqd_report	rep;
	const char *source = NULL,
			   *profile = "normal",
			   *baseline = NULL,
			   *snapshot = NULL;
	const char *sets[64];
	int			nsets = 0,
				info = 0,
				verbose = 0;
	unsigned char *bl = NULL;

	vqd_options_init(&o);
	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];

#define NEXT() (i + 1 < argc ? argv[++i] : (usage(), ""))
		if (strcmp(a, "--thresholds") == 0)
		{
			print_thresholds();
			return 0;
		}
		else if (strcmp(a, "--profile") == 0)
			profile = NEXT();
		else if (strcmp(a, "--frames") == 0)
			o.max_frames = (int) num(a, NEXT(), 1, VQD_MAX_FRAMES);
		else if (strcmp(a, "--seconds") == 0)
			o.max_seconds = num(a, NEXT(), 0.01, 3600);
		else if (strcmp(a, "--timeout-ms") == 0)
			o.timeout_ms = (int) num(a, NEXT(), 1, 3600000);
		else if (strcmp(a, "--connect-timeout-ms") == 0)
			o.connect_timeout_ms = (int) num(a, NEXT(), 1, 3600000);
		else if (strcmp(a, "--read-timeout-ms") == 0)
			o.read_timeout_ms = (int) num(a, NEXT(), 1, 3600000);
		else if (strcmp(a, "--width") == 0)
			o.analysis_width = (int) num(a, NEXT(), 64, VQD_MAX_GRID_W);
		else if (strcmp(a, "--set") == 0)
		{
			if (nsets == 64)
				usage();
			sets[nsets++] = NEXT();
		}
		else if (strcmp(a, "--baseline") == 0)
			baseline = NEXT();
		else if (strcmp(a, "--snapshot") == 0)
			snapshot = NEXT();
		else if (strcmp(a, "--info") == 0)
			info = 1;
		else if (strcmp(a, "--verbose") == 0)
			verbose = 1;
		else if (a[0] == '-' && a[1] == '-')
		{
			fprintf(stderr, "vqd_cli: unknown option %s\n", a);
			usage();
		}
		else if (source)
			usage();
		else
			source = a;
	}
	if (!source)
		usage();
	if (vqd_profile_load(profile, &o.th) < 0)
	{
		fprintf(stderr, "vqd_cli: unknown profile \"%s\" (strict, normal, loose)\n", profile);
		return 2;
	}
	for (int k = 0; k < nsets; k++)
	{
		char		name[64];
		const char *eq = strchr(sets[k], '=');
		int			r;

		if (!eq || eq == sets[k] || (size_t) (eq - sets[k]) >= sizeof(name))
		{
			fprintf(stderr, "vqd_cli: --set expects name=value\n");
			return 2;
		}
		memcpy(name, sets[k], eq - sets[k]);
		name[eq - sets[k]] = 0;
		r = vqd_threshold_set(&o.th, name, num("--set", eq + 1, -1e9, 1e9));
		if (r == -1)
		{
			fprintf(stderr, "vqd_cli: unknown threshold \"%s\" (see --thresholds)\n", name);
			return 2;
		}
		if (r == -2)
		{
			fprintf(stderr, "vqd_cli: threshold \"%s\" out of range\n", name);
			return 2;
		}
	}
	if (baseline)
	{
		bl = slurp(baseline, &o.baseline_len);
		if (!bl)
		{
			fprintf(stderr, "vqd_cli: cannot read baseline %s: %s\n", baseline, strerror(errno));
			return 2;
		}
		o.baseline = bl;
	}
	o.snapshot = snapshot != NULL;
	if (!verbose)
		vqd_quiet_libav();

	if (vqd_diagnose(source, &o, &rep) < 0)
	{
		fprintf(stderr, "vqd_cli: out of memory\n");
		return 1;
	}
	for (int c = 0; c < rep.nresults; c++)
	{
		const vqd_result *r = &rep.r[c];

		if (r->evaluated)
			printf("%s\t%.4f\t%s\t%s\n", r->check, r->metric, r->abnormal ? "t" : "f", r->detail);
		else
			printf("%s\t\t\t%s\n", r->check, r->detail);
	}
	if (info)
		fprintf(stderr, "info: %dx%d %s frames=%d fps=%.2f first_frame_ms=%.0f elapsed_ms=%.1f snapshot=%zu\n",
				rep.width, rep.height, rep.codec, rep.frames, rep.fps, rep.first_frame_ms, rep.elapsed_ms,
				rep.snapshot_len);
	if (snapshot && rep.snapshot)
	{
		FILE	   *f = fopen(snapshot, "wb");

		if (!f || fwrite(rep.snapshot, 1, rep.snapshot_len, f) != rep.snapshot_len || fclose(f) != 0)
		{
			fprintf(stderr, "vqd_cli: cannot write %s\n", snapshot);
			vqd_report_free(&rep);
			free(bl);
			return 1;
		}
	}
	vqd_report_free(&rep);
	free(bl);
	return 0;
}

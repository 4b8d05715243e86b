# vms — PGXS build.  `make run` and `make test` are the two set-up commands;
# both install missing Debian packages first (see test/scripts/deps.sh).

EXTENSION   = vms
EXTVERSION  = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" vms.control)
MODULE_big  = vms
OBJS = \
	extension/vms.o \
	extension/gbcode.o \
	extension/gbcode_parts.o \
	extension/gbcode_tables.o \
	extension/coord.o \
	extension/csv_reader.o \
	extension/validate.o \
	extension/text_grams.o \
	extension/crypto.o \
	extension/access_policy.o \
	extension/viid_outbox.o \
	extension/audit_denied.o \
	extension/search_history_queue.o \
	extension/xact_claims.o \
	extension/cluster_apply.o \
	workers/worker_registry.o \
	workers/worker_tx.o \
	workers/launcher.o \
	workers/viid/viid_settings.o \
	workers/viid/viid_worker.o \
	workers/notifier/notifier_settings.o \
	workers/notifier/notifier.o \
	workers/viid_server/viid_http.o \
	workers/viid_server/viid_images.o \
	workers/viid_server/viid_server_settings.o \
	workers/viid_server/viid_server.o \
	workers/sip/sbuf.o \
	workers/sip/manscdp.o \
	workers/sip/sip_msg.o \
	workers/sip/sip_fastpath.o \
	workers/sip/sip_digest.o \
	workers/sip/sip_settings.o \
	workers/sip/sip_core.o \
	workers/sip/sip_sql.o \
	workers/sip/sip_net.o \
	workers/sip/sip_devices.o \
	workers/sip/sip_db.o \
	workers/sip/sip_control.o \
	workers/sip/sip_requests.o \
	workers/sip/sip_upstream.o \
	workers/sip/sip_server.o \
	workers/sip/sip_worker.o \
	extension/inspect/vqd_sample.o \
	extension/inspect/vqd_checks.o \
	extension/inspect/vqd_profile.o \
	extension/inspect/diagnose_fn.o \
	workers/inspect/inspect_settings.o \
	workers/inspect/inspector.o \
	workers/snapshot/snapshot.o

# install script of the current version: the SQL sources concatenated in
# file-name order.  Earlier versions' frozen install scripts and the upgrade
# scripts between versions live in extension/upgrade/ (see README, Upgrading).
SQL_SOURCES = $(sort $(wildcard extension/sql/*.sql))
# upgrade scripts since 0.3.0 are likewise concatenated from one file per area
# in extension/upgrade/<from>--<to>/ (parallel work never edits one file)
UPGRADE_DIRS  = $(patsubst extension/upgrade/%/,%,$(dir $(wildcard extension/upgrade/*--*/00_header.sql)))
UPGRADE_BUILT = $(patsubst %,vms--%.sql,$(UPGRADE_DIRS))
DATA_built  = vms--$(EXTVERSION).sql $(UPGRADE_BUILT)
DATA        = $(wildcard extension/upgrade/vms--*.sql)

REGRESS = gbcode gbcode_index coord ledger history import import_check alarm governance search search_postgis cones_tiles policy security_surface postgis_schema viid sip diagnose availability alarm_rules work_orders ops_figures audit_archive notify reports sip_cascade device_control
# each file expects postgis and vms loaded in a fresh database: pg_regress
# loads them; installcheck (below, not PGXS's) runs every file alone
REGRESS_OPTS = --load-extension=postgis --load-extension=vms
NO_INSTALLCHECK = 1

PG_CONFIG ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/extension -I/usr/include/libxml2 -I$(srcdir)/extension/inspect \
	-DVMS_EXTVERSION=\"$(EXTVERSION)\"
SHLIB_LINK = -lcrypto -lcurl -losipparser2 -lxml2 -lavformat -lavcodec -lavutil -lswscale -lmicrohttpd
EXTRA_CLEAN = vms--$(EXTVERSION).sql $(UPGRADE_BUILT)

PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifeq ($(PGXS),)
# PostgreSQL's dev files are not installed yet: only the set-up targets work.
all install installcheck:
	@echo "pg_config not found: run 'make test' or 'make run' (they install packages) or 'bash test/scripts/deps.sh'" >&2; exit 1
else
include $(PGXS)
endif

# PGXS does not track headers: rebuild every object when a header changes
$(OBJS): $(wildcard extension/*.h workers/*.h workers/sip/*.h extension/inspect/*.h workers/inspect/*.h workers/viid/*.h workers/viid_server/*.h workers/notifier/*.h workers/snapshot/*.h)
# the workers' readiness check compares the installed version with this one
workers/worker_tx.o: vms.control

vms--$(EXTVERSION).sql: $(SQL_SOURCES)
	cat $^ > $@

# vms--<from>--<to>.sql from extension/upgrade/<from>--<to>/*.sql
.SECONDEXPANSION:
$(UPGRADE_BUILT): vms--%.sql: $$(sort $$(wildcard extension/upgrade/%/*.sql))
	cat $^ > $@

# `make installcheck`: the pg_regress suite against the running server that
# PGHOST/PGPORT/PGUSER name, which must have test/regress.conf's settings;
# each file alone in a fresh contrib_regression database (pg_regress drops
# and creates it), as test/scripts/run_tests.sh runs them.  Diffs of all
# failed files end up in regression.diffs.
ifneq ($(PGXS),)
installcheck: submake
	@rm -f regression.diffs regression.diffs.all; failed=; \
	for t in $(REGRESS); do \
	  { $(pg_regress_installcheck) $(REGRESS_OPTS) $$t; } || \
	    { failed="$$failed $$t"; cat regression.diffs >> regression.diffs.all 2>/dev/null; }; \
	done; \
	if [ -n "$$failed" ]; then \
	  mv -f regression.diffs.all regression.diffs 2>/dev/null; echo "installcheck failed:$$failed (see regression.diffs)"; exit 1; \
	fi; echo "installcheck: all $(words $(REGRESS)) files passed"
endif

.PHONY: deps test run stop bench regress tap

deps:
	bash test/scripts/deps.sh

# build and install (as root, or with a writable PostgreSQL lib dir)
build-install: deps
	$(MAKE) -s all
	$(MAKE) -s install >/dev/null
	$(MAKE) -s -C test/sim

test: build-install
	bash test/scripts/run_tests.sh all

regress: build-install
	bash test/scripts/run_tests.sh regress

tap: build-install
	bash test/scripts/run_tests.sh tap

run: build-install
	bash test/scripts/demo.sh start

stop:
	bash test/scripts/demo.sh stop

bench: build-install
	bash test/scripts/bench.sh

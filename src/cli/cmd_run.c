/* quire run: the program's side of a run. Parses the options (cmd_run_opts.c, whose table
 * is also the man page's and the completion's), blocks the signals before any thread
 * exists, opens the run (its locks first), the source and the destination, and hands them
 * to the engine; or hands over to --dry-run (cmd_run_dry.c) or --queue unconverted. */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cmd_run.h"
#include "cmds.h"
#include "quire/base/util.h"

/* Default staging: inside a destination directory (so delivery is a rename), or
 * ./quire-staging beside the default journal for S3. */
static void default_staging(struct run_opts *o, char *buf, size_t len)
{
        if (o->run.staging)
                return;
        if (strncmp(o->sink.dest, "s3://", 5))
                snprintf(buf, len, "%s/.quire-staging", o->sink.dest);
        else
                snprintf(buf, len, "quire-staging");
        o->run.staging = buf;
}

/* A directory destination must exist before its staging directory can be made in it. */
static int dest_dir_prepare(const char *dest)
{
        return strncmp(dest, "s3://", 5) ? util_mkdirs(dest, true) : 0;
}

int cmd_run(int argc, char **argv)
{
        static struct run_opts opts; /* large (the cpu list) */
        struct run_opts *o = &opts;
        /* Before any thread exists (libcurl's resolver, the token refresher, the workers):
         * they all inherit the mask, and the signals reach only the run's signalfd. */
        run_signals_block();
        int pa = cmd_run_parse_args(argc, argv, o);
        if (pa)
                return pa > 0 ? 0 : RUN_EXIT_USAGE;
        curl_global_init(CURL_GLOBAL_DEFAULT);
        if (o->grin.queue == RUN_GRIN_QUEUE_UNCONVERTED || o->dry_run) {
                int status = o->dry_run ? cmd_run_dry_run(o)
                                        : run_grin_request_unconverted(&o->grin, &o->source,
                                                                       o->run.journal_path, false);
                util_free_secret(o->passphrase);
                curl_global_cleanup();
                return status;
        }
        o->sink.interrupted = run_interrupted;
        char staging[4096], msg[1024];
        default_staging(o, staging, sizeof staging);
        struct run *r = NULL;
        struct source *src = NULL;
        struct sink *sink = NULL;
        int status = RUN_EXIT_USAGE;
        int err = dest_dir_prepare(o->sink.dest);
        if (err)
                snprintf(msg, sizeof msg, "--dest %s: %s", o->sink.dest, strerror(-err));
        if (!err && o->grin.site.library)
                err = run_grin_open(&o->grin, &o->source, &o->run, msg, sizeof msg);
        /* The run's locks first: the sink sweeps what a killed run left only under them. */
        if (!err)
                err = run_new(&r, &o->run, msg, sizeof msg);
        if (!err && run_grin_start(&o->grin) < 0) {
                snprintf(msg, sizeof msg, "cannot start reading GRIN's list");
                err = -EAGAIN;
        }
        if (!err)
                err = source_open(&src, &o->source, msg, sizeof msg);
        if (!err)
                err = sink_open(&sink, &o->sink, msg, sizeof msg);
        if (!err && derived_sinks_wanted(&o->derived)) {
                err =
                    derived_sinks_open(&o->derived, &o->sink, sink, o->sink.dest, msg, sizeof msg);
                if (!err)
                        derived_attach(r, &o->derived.cfg);
        }
        if (err)
                qlog("%s", msg);
        else
                status = run_execute(r, src, sink);
        if (err == -EINTR)
                status = RUN_EXIT_SIGNAL;
        run_free(r); /* also the reading end of GRIN's list: its producer stops */
        run_grin_close(&o->grin);
        if (atomic_load(&o->grin.list_failed) && status == RUN_EXIT_OK)
                status = RUN_EXIT_FAILED;
        derived_sinks_close(&o->derived);
        if (sink)
                sink->ops->close(sink);
        if (src)
                src->ops->close(src);
        util_free_secret(o->passphrase);
        curl_global_cleanup();
        return status;
}

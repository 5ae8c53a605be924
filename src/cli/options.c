/* Option tables: getopt_long's arrays built from them, the --help text, value parsers and
 * the JSON the documentation generators read. */
#include "options.h"

#include "quire/base/util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HELP_WIDTH  80
#define HELP_INDENT 27 /* where option descriptions start in --help */

#define OPTS_END (-1)

struct opts_parser {
        const struct cmd_spec *cmd;
        int argc;
        char **argv;
        int next; /* once opts_next returned OPTS_END: argv index of the first operand */
        struct option longopts[OPTS_MAX + 2];
        char shortopts[3 * OPTS_MAX + 4];
};

static const struct opt help_opt = {"help", OPTS_KEY_HELP, NULL, NULL, "Print this help and exit.",
                                    NULL,   NULL};

static bool is_short(int key)
{
        return key > ' ' && key < 127;
}

static void opts_init(struct opts_parser *p, const struct cmd_spec *cmd, int argc, char **argv)
{
        *p = (struct opts_parser){.cmd = cmd, .argc = argc, .argv = argv};
        size_t n = 0, s = 0;
        /* ':' first: a missing value comes back as ':', an unknown option as '?'. */
        p->shortopts[s++] = ':';
        for (const struct opt *o = cmd->opts; o->name; o++) {
                assert(n < OPTS_MAX && o->key != OPTS_KEY_HELP && o->key > 0);
                p->longopts[n++] = (struct option){
                    o->name, o->arg ? required_argument : no_argument, NULL, o->key};
                if (is_short(o->key)) {
                        p->shortopts[s++] = (char)o->key;
                        if (o->arg)
                                p->shortopts[s++] = ':';
                }
        }
        p->longopts[n++] = (struct option){"help", no_argument, NULL, OPTS_KEY_HELP};
        p->longopts[n] = (struct option){0};
        p->shortopts[s++] = OPTS_KEY_HELP;
        p->shortopts[s] = 0;
        optind = 1;
        opterr = 0;
}

/* The next option's key, its value in *arg; OPTS_END, OPTS_HELP or OPTS_USAGE. */
static int opts_next(struct opts_parser *p, const char **arg)
{
        int k = getopt_long(p->argc, p->argv, p->shortopts, p->longopts, NULL);
        *arg = optarg;
        p->next = optind;
        if (k == -1)
                return OPTS_END;
        if (k == OPTS_KEY_HELP) {
                opts_print_help(p->cmd, stdout);
                return OPTS_HELP;
        }
        if (k == '?' || k == ':') {
                const char *bad = p->argv[optind - 1];
                char shortname[3] = {'-', (char)optopt, 0};
                /* For a bundled short option argv names the bundle, not the letter. */
                if (optopt && is_short(optopt))
                        bad = shortname;
                return opts_usage_error(p->cmd, 0, "%s: %s", bad,
                                        k == ':' ? "missing value" : "unknown option");
        }
        return k;
}

int opts_parse(const struct cmd_spec *cmd, int argc, char **argv,
               int (*set)(void *ctx, int key, const char *arg), void *ctx)
{
        struct opts_parser p;
        opts_init(&p, cmd, argc, argv);
        const char *arg;
        for (int k; (k = opts_next(&p, &arg)) != OPTS_END;) {
                if (k == OPTS_HELP || k == OPTS_USAGE)
                        return k;
                if (set(ctx, k, arg))
                        return OPTS_USAGE;
        }
        int n = argc - p.next;
        if (n > cmd->max_operands)
                return opts_usage_error(cmd, 0, "unexpected argument '%s'",
                                        argv[p.next + cmd->max_operands]);
        if (n < cmd->min_operands)
                return opts_usage_error(cmd, 0, "missing %s", cmd->operands);
        return p.next;
}

int opts_exit_status(int parse_result)
{
        assert(parse_result == OPTS_HELP || parse_result == OPTS_USAGE);
        return parse_result == OPTS_HELP ? 0 : 2;
}

const struct opt *opts_find(const struct cmd_spec *c, int key)
{
        for (const struct opt *o = c->opts; o->name; o++)
                if (o->key == key)
                        return o;
        return key == OPTS_KEY_HELP ? &help_opt : NULL;
}

int opts_usage_error(const struct cmd_spec *c, int key, const char *fmt, ...)
{
        char why[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof why, fmt, ap);
        va_end(ap);
        const struct opt *o = key ? opts_find(c, key) : NULL;
        if (o)
                qlog("--%s: %s (see quire %s --help)", o->name, why, c->name);
        else
                qlog("%s (see quire %s --help)", why, c->name);
        return OPTS_USAGE;
}

int opts_count(const struct cmd_spec *c, int key, const char *arg, uint64_t lo, uint64_t hi,
               uint64_t *out)
{
        char *end;
        errno = 0;
        unsigned long long v = strtoull(arg, &end, 10);
        if (errno || end == arg || *end || arg[0] == '-' || v < lo || v > hi)
                return opts_usage_error(c, key,
                                        "expected a whole number from %llu to %llu, got '%s'",
                                        (unsigned long long)lo, (unsigned long long)hi, arg);
        *out = v;
        return 0;
}

int opts_readable_file(const struct cmd_spec *c, int key, const char *arg)
{
        int fd = open(arg, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return opts_usage_error(c, key, "%s: %s", arg, strerror(errno));
        struct stat st;
        bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
        close(fd);
        if (!regular)
                return opts_usage_error(c, key, "%s: not a regular file", arg);
        return 0;
}

/* 5368709120 -> "5GiB", 1000 -> "1000": as a person would type it. */
static void size_words(uint64_t v, char *buf, size_t n)
{
        static const char *const unit[] = {"", "KiB", "MiB", "GiB", "TiB"};
        unsigned u = 0;
        while (u < 4 && v && v % 1024 == 0) {
                v /= 1024;
                u++;
        }
        snprintf(buf, n, "%llu%s", (unsigned long long)v, unit[u]);
}

int opts_size(const struct cmd_spec *c, int key, const char *arg, uint64_t lo, uint64_t hi,
              uint64_t *out)
{
        uint64_t v;
        if (util_parse_size(arg, &v) < 0)
                return opts_usage_error(c, key,
                                        "expected a size such as 64MiB, 512KiB or 4096, "
                                        "got '%s'",
                                        arg);
        if (v < lo || v > hi) {
                char a[32], b[32];
                size_words(lo, a, sizeof a);
                size_words(hi, b, sizeof b);
                if (hi == UINT64_MAX)
                        return opts_usage_error(c, key, "expected at least %s, got '%s'", a, arg);
                return opts_usage_error(c, key, "expected a size from %s to %s, got '%s'", a, b,
                                        arg);
        }
        *out = v;
        return 0;
}

int opts_choice(const struct cmd_spec *c, int key, const char *arg, unsigned *index)
{
        const struct opt *o = opts_find(c, key);
        assert(o && o->values && o->values[0] != '@');
        size_t alen = strlen(arg);
        unsigned i = 0;
        for (const char *w = o->values; *w; i++) {
                size_t wlen = strcspn(w, " ");
                if (wlen == alen && !memcmp(w, arg, alen)) {
                        *index = i;
                        return 0;
                }
                w += wlen;
                w += *w == ' ';
        }
        return opts_usage_error(c, key, "expected one of %s, got '%s'", o->values, arg);
}

/* Writes text wrapped to HELP_WIDTH, each line starting at column indent; the first line
 * continues from column col. Paragraphs ("\n\n") are kept apart by an empty line. */
static void wrap(FILE *out, const char *text, int indent, int col)
{
        const char *w = text;
        while (*w) {
                if (w[0] == '\n') {
                        fprintf(out, "\n\n%*s", indent, "");
                        col = indent;
                        w += strspn(w, "\n");
                        continue;
                }
                int len = (int)strcspn(w, " \n");
                if (col > indent && col + 1 + len > HELP_WIDTH) {
                        fprintf(out, "\n%*s", indent, "");
                        col = indent;
                } else if (col > indent) {
                        fputc(' ', out);
                        col++;
                }
                fwrite(w, 1, (size_t)len, out);
                col += len;
                w += len;
                w += *w == ' ';
        }
        fputc('\n', out);
}

static void print_opt(FILE *out, const struct opt *o)
{
        int col = 0;
        if (is_short(o->key) && o->key != OPTS_KEY_HELP)
                col += fprintf(out, "  -%c, --%s", o->key, o->name);
        else
                col += fprintf(out, "  --%s", o->name);
        if (o->arg)
                col += fprintf(out, " %s", o->arg);
        if (col + 2 > HELP_INDENT) {
                fputc('\n', out);
                col = 0;
        }
        fprintf(out, "%*s", HELP_INDENT - col, "");
        char text[2048];
        snprintf(text, sizeof text, "%s%s%s%s", o->help, o->def ? " (default: " : "",
                 o->def ? o->def : "", o->def ? ")" : "");
        wrap(out, text, HELP_INDENT, HELP_INDENT);
}

void opts_print_help(const struct cmd_spec *c, FILE *out)
{
        fprintf(out, "usage: quire %s [OPTIONS]%s%s\n", c->name, c->operands ? " " : "",
                c->operands ? c->operands : "");
        if (c->description)
                wrap(out, c->description, 0, 0);
        const char *section = NULL;
        for (const struct opt *o = c->opts; o->name; o++) {
                const char *s = o->section ? o->section : section ? section : "Options";
                if (s != section)
                        fprintf(out, "\n%s:\n", s);
                section = s;
                print_opt(out, o);
        }
        if (!section)
                fputs("\nOptions:\n", out);
        print_opt(out, &help_opt);
}

void opts_print_commands(const struct cmd_spec *const *cmds, size_t n, FILE *out)
{
        fputs("usage: quire COMMAND [OPTIONS] [OPERANDS]\n\n", out);
        for (size_t i = 0; i < n; i++) {
                char syn[128];
                snprintf(syn, sizeof syn, "quire %s", cmds[i]->name);
                fprintf(out, "  %-22s %s\n", syn, cmds[i]->summary);
        }
        fputs("  quire --version\n\n'quire COMMAND --help' describes each command's options; "
              "man quire, all of them.\n",
              out);
}

static json_t *opt_json(const struct opt *o, const char *section)
{
        char shortname[2] = {(char)o->key, 0};
        return json_pack("{s:s, s:s?, s:s?, s:s?, s:s, s:s, s:s?}", "name", o->name, "short",
                         is_short(o->key) ? shortname : NULL, "arg", o->arg, "default", o->def,
                         "help", o->help, "section", section, "values", o->values);
}

static json_t *cmd_json(const struct cmd_spec *c)
{
        json_t *opts = json_array();
        const char *section = "Options";
        for (const struct opt *o = c->opts; o->name; o++) {
                section = o->section ? o->section : section;
                json_array_append_new(opts, opt_json(o, section));
        }
        json_array_append_new(opts, opt_json(&help_opt, section));
        return json_pack("{s:s, s:s?, s:s?, s:s, s:s?, s:o}", "name", c->name, "operands",
                         c->operands, "operand_values", c->operand_values, "summary", c->summary,
                         "description", c->description, "options", opts);
}

int opts_dump_json(const struct cmd_spec *const *cmds, size_t n, FILE *out)
{
        json_t *all = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(all, cmd_json(cmds[i]));
        int r = json_dumpf(all, out, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
        json_decref(all);
        if (r)
                return -EIO;
        return fputc('\n', out) == EOF ? -EIO : 0;
}

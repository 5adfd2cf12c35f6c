/* The shape of a configuration file's YAML, checked by one pass of libyaml's event parser before
 * the loader builds its node graph (see wd__cfg_check_shape in config_int.h).
 *
 * libyaml's loader takes time quadratic in the depth of nesting (20,000 `[` took 1.2 s, 40,000
 * 5.6 s, 80,000 14 s in the master's loop at a reload) and in the number of anchors (each new one
 * is compared with all before it: 40,000 took 1.9 s). An alias costs nothing to load, but the
 * walker reads its node once for every alias: an env of 20,000 names given to 2,000 mounts by
 * alias (80 million nodes), a 400 KB file, kept `wsgid --check` busy for over 120 s and took
 * 3.4 GB before it was stopped. wsgid's own keys nest a few deep, and a config has a few anchors:
 * past MAX_DEPTH, MAX_ANCHORS or MAX_ALIASED_NODES the file is refused where the excess is met,
 * and the pass stops there (64 levels: 1 ms). So is an anchor name given twice and a second
 * document, both of which the loader refuses too, and an alias inside the node it names, which
 * the walker would follow for ever. A syntax error the pass meets first is left to the loader,
 * which reports it. */
#include "config_int.h"
#include "alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_DEPTH 64
#define MAX_ANCHORS 1000
/* The nodes that aliases stand for, each alias counted as the whole node it names (the aliases
 * within it too; a node is a key, a value, a list or a mapping). The loader reads a million in
 * a fraction of a second: an env of 500 names given to 999 more groups by alias (1,001,000)
 * took 0.17 s and 50 MB in `wsgid --check`, a python-path of 5,000 given to 200 mounts 0.11 s. */
#define MAX_ALIASED_NODES 1000000

typedef struct {
    char *name;
    size_t nodes;     /* the node's own and all below it; 0 while it is still open */
    size_t line, col; /* where it is defined */
} anchor_t;

typedef struct {
    anchor_t anchors[MAX_ANCHORS];
    wd__cfg_strset_t names;         /* name -> its index in anchors */
    size_t open[MAX_DEPTH + 1];     /* nodes so far in the collection open at each depth */
    anchor_t *named[MAX_DEPTH + 1]; /* its anchor, or NULL */
    size_t aliased;
} shape_t;

static const char *event_anchor(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return (const char *)ev->data.scalar.anchor;
    case YAML_SEQUENCE_START_EVENT:
        return (const char *)ev->data.sequence_start.anchor;
    case YAML_MAPPING_START_EVENT:
        return (const char *)ev->data.mapping_start.anchor;
    default:
        return NULL;
    }
}

/* Counts n nodes into the collection open at depth (none at 0). */
static void add_nodes(shape_t *s, int depth, size_t n)
{
    if (depth > 0)
        s->open[depth] += n < SIZE_MAX - s->open[depth] ? n : SIZE_MAX - s->open[depth];
}

/* One event: 0, or -1 with the file refused. */
static int shape_event(loader_t *ld, shape_t *s, const yaml_event_t *ev, int *depth, int *anchors)
{
    size_t line = ev->start_mark.line + 1, col = ev->start_mark.column + 1;
    const char *anchor = event_anchor(ev);
    anchor_t *a = NULL;
    long i;

    if (anchor != NULL) {
        if (*anchors == MAX_ANCHORS)
            return wd__cfg_fail_at(ld, line, col, NULL, "more than %d YAML anchors (&%s)",
                                   MAX_ANCHORS, anchor);
        i = wd__cfg_strset_find(&s->names, anchor);
        if (i >= 0) /* libyaml's loader refuses it too, in its own words */
            return wd__cfg_fail_at(ld, line, col, NULL,
                                   "YAML anchor &%s is given twice (first at line %zu, column %zu)",
                                   anchor, s->anchors[i].line, s->anchors[i].col);
        a = &s->anchors[*anchors];
        *a = (anchor_t){.name = xstrdup(anchor), .nodes = 0, .line = line, .col = col};
        wd__cfg_strset_add(&s->names, a->name, (size_t)(*anchors)++);
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        add_nodes(s, *depth, 1);
        if (a != NULL)
            a->nodes = 1;
        break;
    case YAML_ALIAS_EVENT:
        i = wd__cfg_strset_find(&s->names, (const char *)ev->data.alias.anchor);
        if (i < 0)
            break; /* no such anchor: the loader's error */
        a = &s->anchors[i];
        if (a->nodes == 0)
            return wd__cfg_fail_at(ld, line, col, NULL,
                                   "YAML alias *%s stands for a node that contains it", a->name);
        add_nodes(s, *depth, a->nodes);
        s->aliased += a->nodes < SIZE_MAX - s->aliased ? a->nodes : SIZE_MAX - s->aliased;
        if (s->aliased > MAX_ALIASED_NODES)
            return wd__cfg_fail_at(
                ld, line, col, NULL,
                "YAML aliases stand for more than %d nodes in all (a key, a value, a list or a "
                "mapping is one; *%s alone: %zu); write them out, or alias smaller parts",
                MAX_ALIASED_NODES, a->name, a->nodes);
        break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        if (*depth == MAX_DEPTH)
            return wd__cfg_fail_at(ld, line, col, NULL,
                                   "nested deeper than %d levels (no wsgid setting nests more "
                                   "than a few)",
                                   MAX_DEPTH);
        ++*depth;
        s->open[*depth] = 1;
        s->named[*depth] = a;
        break;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (*depth > 0) {
            if (s->named[*depth] != NULL)
                s->named[*depth]->nodes = s->open[*depth];
            add_nodes(s, *depth - 1, s->open[*depth]);
            --*depth;
        }
        break;
    default:
        break;
    }
    return 0;
}

int wd__cfg_check_shape(loader_t *ld, const char *text, size_t len)
{
    shape_t *s = xcalloc(1, sizeof *s);
    yaml_parser_t parser;
    yaml_event_t ev;
    int depth = 0, anchors = 0, documents = 0, rc = 0, end = 0, i;

    if (!yaml_parser_initialize(&parser))
        abort();
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    while (!end && yaml_parser_parse(&parser, &ev)) {
        /* The loader refuses a second document in the same words, having loaded it */
        if (ev.type == YAML_DOCUMENT_START_EVENT && documents++ > 0)
            rc = wd__cfg_fail_at(ld, ev.start_mark.line + 1, ev.start_mark.column + 1, NULL,
                                 "only one YAML document is expected in the file");
        else
            rc = shape_event(ld, s, &ev, &depth, &anchors);
        end = rc < 0 || ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    for (i = 0; i < anchors; i++)
        free(s->anchors[i].name);
    wd__cfg_strset_free(&s->names);
    free(s);
    return rc;
}

/* The text each group's workers get: see wd_config_split in config.h.
 *
 * The master loaded and checked the file; its workers parse what it hands them, as their group's
 * user. Each got the whole text before, and with it every other group's env: (DATABASE_PASSWORD
 * and the like), apps and paths, which its app could find in its own memory (helper-72). Now the
 * file's YAML is loaded once more, and for each group a document is built that holds the
 * top-level keys and, under groups:, that group alone, and written out by libyaml's emitter.
 *
 * The nodes are copied, not the text: an alias into another group's part (an env: shared by
 * anchor) still finds its node, which the emitter anchors anew when more than one place uses it,
 * so a node given to many mounts by alias is written once; comments, which may say anything, are
 * left out. Scalars keep their style (the loader tells a plain null or false from a quoted one)
 * and their tag; collections are written in block style, where an empty plain scalar stays plain
 * (in flow style libyaml's emitter quotes it, and '' is no null). What the worker loads from it
 * is its group's configuration as the master loaded it (tests/unit/test_config.c compares
 * them), but the lines and columns are the new text's, not the file's: the worker's loader does
 * not refuse what the master's took, and its messages say the text is the master's copy. */
#include "config_int.h"
#include "alloc.h"

#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef struct {
    yaml_document_t *from;
    yaml_document_t to;
    int *copied; /* node id in from -> its id in to, 0 = not copied yet */
} split_t;

typedef struct {
    char *text;
    size_t len, cap;
} out_t;

static int copy_node(split_t *s, int id);

static int copy_pairs(split_t *s, yaml_node_t *n, int to)
{
    yaml_node_pair_t *p;

    for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        int k = copy_node(s, p->key), v = copy_node(s, p->value);

        if (k == 0 || v == 0 || !yaml_document_append_mapping_pair(&s->to, to, k, v))
            return -1;
    }
    return 0;
}

/* Node id of `from` copied into `to` (once: an alias is the same node again); 0 on failure. The
 * shape check bounds the depth (config_shape.c), hence the recursion. */
static int copy_node(split_t *s, int id)
{
    yaml_node_t *n = yaml_document_get_node(s->from, id);
    int to = 0;
    yaml_node_item_t *it;

    if (n == NULL)
        return 0;
    if (s->copied[id - 1] != 0)
        return s->copied[id - 1];
    switch (n->type) {
    case YAML_SCALAR_NODE:
        to = yaml_document_add_scalar(&s->to, n->tag, n->data.scalar.value,
                                      (int)n->data.scalar.length, n->data.scalar.style);
        break;
    case YAML_SEQUENCE_NODE:
        to = yaml_document_add_sequence(&s->to, n->tag, YAML_BLOCK_SEQUENCE_STYLE);
        for (it = n->data.sequence.items.start; to != 0 && it < n->data.sequence.items.top; it++) {
            int item = copy_node(s, *it);

            if (item == 0 || !yaml_document_append_sequence_item(&s->to, to, item))
                to = 0;
        }
        break;
    case YAML_MAPPING_NODE:
        to = yaml_document_add_mapping(&s->to, n->tag, YAML_BLOCK_MAPPING_STYLE);
        if (to != 0 && copy_pairs(s, n, to) < 0)
            to = 0;
        break;
    default:
        break;
    }
    s->copied[id - 1] = to;
    return to;
}

static int write_cb(void *data, unsigned char *buf, size_t size)
{
    out_t *o = data;

    if (o->len + size + 1 > o->cap) {
        o->cap = (o->len + size + 1) * 2;
        o->text = xrealloc(o->text, o->cap);
    }
    memcpy(o->text + o->len, buf, size);
    o->len += size;
    o->text[o->len] = '\0';
    return 1;
}

/* The root mapping of from with `groups: {NAME: ...}` holding only the pair `group` of the
 * mapping groups, emitted into *o. 0 or -1. */
static int emit_part(yaml_document_t *from, yaml_node_t *root, int groups, yaml_node_pair_t *group,
                     out_t *o)
{
    split_t s = {.from = from};
    yaml_emitter_t em;
    yaml_node_pair_t *p;
    int rc = -1, to_root, em_ok = 0;
    size_t n_nodes = (size_t)(from->nodes.top - from->nodes.start);

    if (!yaml_document_initialize(&s.to, NULL, NULL, NULL, 1, 1))
        abort();
    s.copied = xcalloc(n_nodes, sizeof *s.copied);
    to_root = yaml_document_add_mapping(&s.to, NULL, YAML_BLOCK_MAPPING_STYLE);
    for (p = root->data.mapping.pairs.start; to_root != 0 && p < root->data.mapping.pairs.top;
         p++) {
        int k = copy_node(&s, p->key), v;

        if (p->value == groups) {
            int gk = copy_node(&s, group->key), gv = copy_node(&s, group->value);

            /* (libyaml asserts that both are nodes: 0, out of memory, must not reach it) */
            v = yaml_document_add_mapping(&s.to, NULL, YAML_BLOCK_MAPPING_STYLE);
            if (v == 0 || gk == 0 || gv == 0 ||
                !yaml_document_append_mapping_pair(&s.to, v, gk, gv))
                goto done;
        } else {
            v = copy_node(&s, p->value);
        }
        if (k == 0 || v == 0 || !yaml_document_append_mapping_pair(&s.to, to_root, k, v))
            goto done;
    }
    if (!yaml_emitter_initialize(&em))
        abort();
    em_ok = 1;
    yaml_emitter_set_output(&em, write_cb, o);
    yaml_emitter_set_unicode(&em, 1);
    yaml_emitter_set_width(&em, -1); /* no folding of long scalars */
    if (!yaml_emitter_open(&em))
        goto done;
    rc = yaml_emitter_dump(&em, &s.to) && yaml_emitter_close(&em) ? 0 : -1;
    free(s.copied);
    yaml_emitter_delete(&em);
    return rc; /* dump deleted the document, whatever it returned */

done:
    free(s.copied);
    yaml_document_delete(&s.to);
    if (em_ok)
        yaml_emitter_delete(&em);
    return -1;
}

/* See config.h. */
int wd_config_split(const char *text, size_t len, wd_config_part_t **parts, size_t *n_parts)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *root, *groups = NULL;
    yaml_node_pair_t *p;
    int parser_ok = 0, doc_ok = 0, rc = -1, groups_id = 0;
    size_t n = 0;

    *parts = NULL;
    *n_parts = 0;
    if (!yaml_parser_initialize(&parser))
        abort();
    parser_ok = 1;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc))
        goto done;
    doc_ok = 1;
    root = yaml_document_get_root_node(&doc);
    if (root == NULL || root->type != YAML_MAPPING_NODE)
        goto done;
    for (p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&doc, p->key);

        if (k != NULL && k->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, "groups") == 0) {
            groups_id = p->value;
            groups = yaml_document_get_node(&doc, p->value);
        }
    }
    if (groups == NULL || groups->type != YAML_MAPPING_NODE)
        goto done;
    n = (size_t)(groups->data.mapping.pairs.top - groups->data.mapping.pairs.start);
    *parts = xcalloc(n > 0 ? n : 1, sizeof **parts);
    for (size_t i = 0; i < n; i++) {
        yaml_node_pair_t *g = &groups->data.mapping.pairs.start[i];
        yaml_node_t *k = yaml_document_get_node(&doc, g->key);
        out_t o = {0};

        if (k == NULL || k->type != YAML_SCALAR_NODE ||
            emit_part(&doc, root, groups_id, g, &o) < 0) {
            free(o.text);
            goto done;
        }
        (*parts)[i].group = xstrdup((const char *)k->data.scalar.value);
        (*parts)[i].text = o.text;
        (*parts)[i].len = o.len;
        *n_parts = i + 1;
    }
    rc = 0;
done:
    if (rc < 0) {
        wd_config_split_free(*parts, *n_parts);
        *parts = NULL;
        *n_parts = 0;
    }
    if (doc_ok)
        yaml_document_delete(&doc);
    if (parser_ok)
        yaml_parser_delete(&parser);
    return rc;
}

void wd_config_split_free(wd_config_part_t *parts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(parts[i].group);
        free(parts[i].text);
    }
    free(parts);
}

/*
 * test_cluster.c — a real cluster on loopback: `deploy/cluster.sh up 3` (three convd
 * nodes, each on its own state dir, behind Debian's nginx with deploy/nginx's routing),
 * and everything through the front URL with the session id in X-Session-Id or the path:
 * the notebook's three flows and the 40 reference cases, checked against the fixtures;
 * misuse of cluster.sh refused with the reason;
 * ids that name their node, spread over at least two nodes; a body-only reference on the
 * wrong node answering 421; one node kill -9'ed (its sessions answer 502 from the router,
 * everything else goes on), restarted on its state dir with its sessions intact (same W;
 * backward 409 no_forward_cache until a new forward); `add` keeping every old session
 * reachable while new sessions reach the new node; `down` stopping every process.
 * The tests run in order on one cluster; the group teardown runs `down` whatever
 * happened, and removes the cluster directory only when everything passed.
 */
#include "front.h"
#include "itest.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_NODES    8
#define MAX_SESSIONS 128

typedef struct node {
    char name[48];
    char url[64];
    pid_t pid;
} node;

static char cluster_dir[64];
static char front[64];
static node nodes[MAX_NODES];
static int n_nodes;

/* Every session the tests created, with what they know about it: the reference case it
 * ran (-1: the notebook), and whether it has trained weights (SGD step). */
typedef struct session {
    char id[96];
    int ref_case;
} session;
static session sessions[MAX_SESSIONS];
static int n_sessions;
static cJSON *cases;
static int failed_any;

/* Runs deploy/cluster.sh with args on this cluster's directory; 0 or the exit code. */
static int cluster_sh(const char *a1, const char *a2, char **out)
{
    const char *cmd[] = {"deploy/cluster.sh", a1, a2, NULL};
    char *dir_env = strf("CLUSTER_DIR=%s", cluster_dir);
    char *bin_env = strf("CONVD_BIN=%s", daemon_bin());
    const char *env[] = {dir_env, bin_env, NULL};
    int rc = daemon_run_cmd(cmd, env, 90000, out);
    free(dir_env);
    free(bin_env);
    if (!*out)
        *out = strdup("");
    return rc;
}

/* Reads "node NAME URL PID" lines of out into nodes[] (a known name is updated). */
static int parse_nodes(const char *out)
{
    int seen = 0;
    for (const char *line = out; line && *line; line = strchr(line, '\n'), line += !!line) {
        node nd = {0};
        int pid;
        if (sscanf(line, "node %47s %63s %d", nd.name, nd.url, &pid) != 3)
            continue;
        nd.pid = pid;
        int i = 0;
        while (i < n_nodes && strcmp(nodes[i].name, nd.name) != 0)
            i++;
        if (i == MAX_NODES)
            return -1;
        nodes[i] = nd;
        if (i == n_nodes)
            n_nodes++;
        seen++;
    }
    return seen;
}

static const node *node_named(const char *name)
{
    for (int i = 0; i < n_nodes; i++)
        if (strcmp(nodes[i].name, name) == 0)
            return &nodes[i];
    return NULL;
}

static void front_req(const char *method, const char *path, const char *body, const char *sid,
                      http_res *r)
{
    front_do(front, method, path, body, sid, r);
}

static void remember(const char *id, int ref_case)
{
    assert_true(n_sessions < MAX_SESSIONS);
    snprintf(sessions[n_sessions].id, sizeof sessions[n_sessions].id, "%s", id);
    sessions[n_sessions].ref_case = ref_case;
    n_sessions++;
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(cluster_dir, sizeof cluster_dir, "/tmp/convd-cluster-XXXXXX");
    if (!mkdtemp(cluster_dir))
        return -1;
    char *out;
    int rc = cluster_sh("up", "3", &out);
    char url[64] = "";
    const char *f = strstr(out, "front ");
    if (f)
        sscanf(f, "front %63s", url);
    if (rc != 0 || !*url || parse_nodes(out) != 3) {
        fprintf(stderr, "cluster.sh up 3: exit %d, output:\n%s\n", rc, out);
        free(out);
        return -1;
    }
    snprintf(front, sizeof front, "%s", url);
    free(out);
    cases = fixture_load("reference_cases.json");
    return 0;
}

/* Every node's log, when something failed. */
static void dump_logs(void)
{
    for (int i = 0; i < n_nodes; i++) {
        char *path = strf("%s/%s/convd.log", cluster_dir, nodes[i].name);
        const char *cmd[] = {"tail", "-n", "30", path, NULL};
        char *out;
        daemon_run_cmd(cmd, NULL, 5000, &out);
        fprintf(stderr, "--- %s:\n%s\n", path, out ? out : "");
        free(out);
        free(path);
    }
}

static int group_teardown(void **state)
{
    (void)state;
    char *out;
    int rc = cluster_sh("down", NULL, &out);
    if (rc != 0)
        fprintf(stderr, "cluster.sh down: exit %d: %s\n", rc, out);
    free(out);
    if (failed_any) {
        dump_logs();
        fprintf(stderr, "cluster directory kept: %s\n", cluster_dir);
    } else {
        const char *rm[] = {"rm", "-rf", cluster_dir, NULL};
        daemon_run_cmd(rm, NULL, 30000, &out);
        free(out);
    }
    cJSON_Delete(cases);
    return rc == 0 ? 0 : -1;
}

/* Every test counts itself failed until it reaches its end (cmocka ends a failing test
 * early), so the teardown knows whether to keep the cluster directory and logs. */
static int count_run(void **state)
{
    (void)state;
    failed_any++;
    return 0;
}

static void passed(void)
{
    failed_any--;
}

static void test_up_prints_front_and_nodes(void **state)
{
    (void)state;
    assert_int_equal(n_nodes, 3);
    for (int i = 0; i < n_nodes; i++) {
        char want[16];
        snprintf(want, sizeof want, "n%d", i + 1);
        assert_string_equal(nodes[i].name, want);
        assert_true(nodes[i].pid > 1);
        assert_int_equal(kill(nodes[i].pid, 0), 0);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(nodes[i].url, nodes[j].url);
        /* the node itself, and the router's way to it */
        http_res r;
        assert_int_equal(http_do(NULL, nodes[i].url, "GET", "/healthz", NULL, 0, NULL, &r), 0);
        expect_status(&r, 200);
        http_res_free(&r);
        char *path = strf("/nodes/%s/readyz", nodes[i].name);
        front_req("GET", path, NULL, NULL, &r);
        expect_status(&r, 200);
        http_res_free(&r);
        free(path);
    }
    http_res r;
    front_req("GET", "/healthz", NULL, NULL, &r);
    expect_status(&r, 200);
    http_res_free(&r);
    passed();
}

/* Misuse is refused with the reason, and changes nothing. */
static void test_cluster_sh_refuses_misuse(void **state)
{
    (void)state;
    static const char *const bad[][3] = {
        {"up", "3", "a cluster is running"},
        {"up", "0", "usage: cluster.sh up N"},
        {"restart", "n9", "usage: cluster.sh restart NAME"},
        {"add", "N-1", "is not [a-z0-9-]{1,40}"},
        {"add", "n1", "already in the cluster"},
        {"frobnicate", NULL, "usage: cluster.sh up N"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out;
        int rc = cluster_sh(bad[i][0], bad[i][1], &out);
        if (rc != 1 || !strstr(out, bad[i][2]))
            fail_msg("cluster.sh %s %s: exit %d, '%s' (want 1 and '%s')", bad[i][0],
                     bad[i][1] ? bad[i][1] : "", rc, out, bad[i][2]);
        free(out);
    }
    char *out;
    assert_int_equal(cluster_sh("status", NULL, &out), 0);
    assert_int_equal(parse_nodes(out), 3);
    assert_int_equal(n_nodes, 3);
    free(out);
    for (int i = 0; i < n_nodes; i++)
        assert_int_equal(kill(nodes[i].pid, 0), 0);
    passed();
}

static void test_notebook_through_front(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *W = tt_json(nb->W.data, nb->W.rank, nb->W.shape, TT_NESTED, 64, 1);
    char *x = tt_json(nb->x.data, nb->x.rank, nb->x.shape, TT_NESTED, 64, 1);
    char *delta = tt_json(nb->delta.data, nb->delta.rank, nb->delta.shape, TT_NESTED, 64, 1);
    char *layer = strf("{\"W\":%s}", W);
    char *xbody = strf("{\"x\":%s}", x);
    char *dbody = strf("{\"delta\":%s}", delta);
    http_res r;
    char name[48];

    /* 1. POST /sessions, then forward and backward with the id in X-Session-Id */
    for (int k = 0; k < 3; k++) {
        front_req("POST", "/sessions", layer, NULL, &r);
        expect_status(&r, 201);
        char *id = strdup(cJSON_GetStringValue(jget(r.json, "session")));
        assert_string_equal(r.session_id, id);
        front_id_node(id, name, sizeof name);
        assert_non_null(node_named(name));
        http_res_free(&r);
        front_req("POST", "/forward", xbody, id, &r);
        expect_status(&r, 200);
        assert_string_equal(cJSON_GetStringValue(jget(r.json, "session")), id);
        expect_tensor(jget(r.json, "y"), &nb->y, TT_NESTED, 0, 0, "y");
        http_res_free(&r);
        front_req("POST", "/backward", dbody, id, &r);
        expect_status(&r, 200);
        expect_tensor(jget(r.json, "dx"), &nb->dx, TT_NESTED, 0, 0, "dx");
        expect_tensor(jget(r.json, "dW"), &nb->dW, TT_NESTED, 0, 0, "dW");
        expect_tensor(jget(r.json, "db"), &nb->db, TT_NESTED, 0, 0, "db");
        http_res_free(&r);
        /* 2. the same through the path routes */
        char *p = strf("/sessions/%s/forward", id);
        front_req("POST", p, xbody, NULL, &r);
        expect_status(&r, 200);
        expect_tensor(jget(r.json, "y"), &nb->y, TT_NESTED, 0, 0, "y by path");
        http_res_free(&r);
        free(p);
        p = strf("/sessions/%s/backward", id);
        front_req("POST", p, dbody, NULL, &r);
        expect_status(&r, 200);
        expect_tensor(jget(r.json, "dW"), &nb->dW, TT_NESTED, 0, 0, "dW by path");
        http_res_free(&r);
        free(p);
        p = strf("/sessions/%s", id);
        front_req("GET", p, NULL, NULL, &r);
        expect_status(&r, 200);
        expect_tensor(jget(r.json, "W"), &nb->W, TT_NESTED, 0, 0, "GET W");
        assert_int_equal(jnum(r.json, "forwards"), 2);
        assert_int_equal(jnum(r.json, "backwards"), 2);
        http_res_free(&r);
        free(p);
        remember(id, -1);
        free(id);
    }

    /* 3. an inline-layer forward creates the session on any node; backward follows it */
    char *inline_fwd = strf("{\"layer\":%s,\"x\":%s}", layer, x);
    front_req("POST", "/forward", inline_fwd, NULL, &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "y"), &nb->y, TT_NESTED, 0, 0, "inline y");
    char *id = strdup(r.session_id);
    front_id_node(id, name, sizeof name);
    http_res_free(&r);
    front_req("POST", "/backward", dbody, id, &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "dx"), &nb->dx, TT_NESTED, 0, 0, "inline dx");
    expect_tensor(jget(r.json, "dW"), &nb->dW, TT_NESTED, 0, 0, "inline dW");
    http_res_free(&r);
    remember(id, -1);
    free(id);

    /* 4. stateless backward: any node, no session */
    char *stateless = strf("{\"layer\":%s,\"x\":%s,\"delta\":%s}", layer, x, delta);
    for (int k = 0; k < 3; k++) {
        front_req("POST", "/backward", stateless, NULL, &r);
        expect_status(&r, 200);
        assert_null(cJSON_GetObjectItemCaseSensitive(r.json, "session"));
        expect_tensor(jget(r.json, "db"), &nb->db, TT_NESTED, 0, 0, "stateless db");
        http_res_free(&r);
    }
    free(stateless);
    free(inline_fwd);
    free(dbody);
    free(xbody);
    free(layer);
    free(delta);
    free(x);
    free(W);
    passed();
}

/* Compares a flat tensor answer with a fixture tensor; returns 0 or prints and returns 1. */
static int close_to(const cJSON *got, const cJSON *want, const char *name, const char *what)
{
    ttensor w, g;
    char why[512];
    tensor_read(want, &w, what);
    int bad = 0;
    if (tt_from_json(got, &g, why, sizeof why) != 0) {
        bad = 1;
    } else {
        bad = tt_compare(&g, &w, 1e-9 * (1 + tt_max_abs(&w)), why, sizeof why) != 0;
        tt_free(&g);
    }
    if (bad)
        print_error("%s %s: %s\n", name, what, why);
    tt_free(&w);
    return bad;
}

/* Forward (and backward when with_backward) of reference case c on session id, through
 * the front with X-Session-Id; returns the number of mismatches. */
static int run_case(const cJSON *c, const char *id, int with_backward)
{
    const char *name = cJSON_GetStringValue(jget(c, "name"));
    const cJSON *exp = jget(c, "expected");
    char *x = json_text(jget(c, "x"));
    char *body = strf("{\"x\":%s}", x);
    http_res r;
    int bad = 0;
    front_req("POST", "/forward", body, id, &r);
    if (r.status != 200) {
        print_error("%s forward: HTTP %ld %s\n", name, r.status, r.body);
        bad++;
    } else {
        bad += close_to(cJSON_GetObjectItemCaseSensitive(r.json, "y"), jget(exp, "y"), name, "y");
    }
    http_res_free(&r);
    free(body);
    free(x);
    if (!with_backward || bad)
        return bad;
    char *delta = json_text(jget(c, "delta"));
    body = strf("{\"delta\":%s}", delta);
    front_req("POST", "/backward", body, id, &r);
    if (r.status != 200) {
        print_error("%s backward: HTTP %ld %s\n", name, r.status, r.body);
        bad++;
    } else {
        bad +=
            close_to(cJSON_GetObjectItemCaseSensitive(r.json, "dx"), jget(exp, "dx"), name, "dx");
        bad +=
            close_to(cJSON_GetObjectItemCaseSensitive(r.json, "dW"), jget(exp, "dW"), name, "dW");
        const cJSON *db = cJSON_GetObjectItemCaseSensitive(exp, "db");
        if (db)
            bad += close_to(cJSON_GetObjectItemCaseSensitive(r.json, "db"), db, name, "db");
        else if (cJSON_GetObjectItemCaseSensitive(r.json, "db"))
            bad += 1;
    }
    http_res_free(&r);
    free(body);
    free(delta);
    return bad;
}

static void test_reference_cases_spread_over_nodes(void **state)
{
    (void)state;
    int per_node[MAX_NODES] = {0};
    int bad = 0, n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, jget(cases, "cases"))
    {
        char *layer = json_text(jget(c, "layer"));
        http_res r;
        front_req("POST", "/sessions", layer, NULL, &r);
        expect_status(&r, 201);
        char name[48];
        const char *id = cJSON_GetStringValue(jget(r.json, "session"));
        front_id_node(id, name, sizeof name);
        const node *nd = node_named(name);
        if (!nd)
            fail_msg("session %s names node %s, which is not in the cluster", id, name);
        per_node[nd - nodes]++;
        bad += run_case(c, id, 1);
        remember(id, n);
        http_res_free(&r);
        free(layer);
        n++;
    }
    assert_int_equal(n, 40);
    if (bad)
        fail_msg("%d mismatches over the 40 cases through the router", bad);
    int used = 0;
    for (int i = 0; i < n_nodes; i++) {
        print_message("node %s holds %d of the 40 sessions\n", nodes[i].name, per_node[i]);
        used += per_node[i] > 0;
    }
    if (used < 2)
        fail_msg("all 40 new sessions went to one node: the router does not spread them");
    passed();
}

/* A session named only in the body reaches a random node; the others answer 421. */
static void test_body_only_reference_is_421_elsewhere(void **state)
{
    (void)state;
    const char *id = sessions[0].id;
    char name[48];
    front_id_node(id, name, sizeof name);
    const notebook *nb = notebook_get();
    char *x = tt_json(nb->x.data, nb->x.rank, nb->x.shape, TT_NESTED, 64, 1);
    char *body = strf("{\"session\":\"%s\",\"x\":%s}", id, x);
    int wrong = 0, right = 0;
    for (int k = 0; k < 2 * n_nodes; k++) {
        http_res r;
        front_req("POST", "/forward", body, NULL, &r);
        if (r.status == 200) {
            right++;
        } else {
            expect_error(&r, 421, "wrong_node", NULL);
            const char *msg = cJSON_GetStringValue(jget(jget(r.json, "error"), "message"));
            if (!strstr(msg, name) || !strstr(msg, "X-Session-Id"))
                fail_msg("the 421 message should name node %s and X-Session-Id: %s", name, msg);
            wrong++;
        }
        http_res_free(&r);
    }
    print_message("%d answered by %s, %d by other nodes (421)\n", right, name, wrong);
    assert_true(wrong > 0);
    free(body);
    free(x);
    passed();
}

/* The text of a session's W (flat), as the node printed it; NULL when not 200. */
static char *session_W(const char *id, long *status)
{
    char *p = strf("/sessions/%s?output=flat", id);
    http_res r;
    front_req("GET", p, NULL, NULL, &r);
    free(p);
    *status = r.status;
    char *w = r.status == 200 ? raw_member(r.body, "W") : NULL;
    http_res_free(&r);
    return w;
}

static int wait_gone(pid_t pid, int ms)
{
    for (int t = 0; t < ms; t += 20) {
        if (kill(pid, 0) != 0 && errno == ESRCH)
            return 1;
        char path[64], st[256] = "";
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "r");
        if (f) {
            if (!fgets(st, sizeof st, f))
                st[0] = '\0';
            fclose(f);
        }
        const char *paren = strrchr(st, ')');
        if (!f || (paren && paren[1] == ' ' && paren[2] == 'Z'))
            return 1;
        sleep_ms(20);
    }
    return 0;
}

/* Whether url's port refuses connections within ms. */
static int port_closed(const char *url, int ms)
{
    const char *colon = strrchr(url, ':');
    assert_non_null(colon);
    for (int t = 0; t < ms; t += 20) {
        int fd = raw_connect(atoi(colon + 1));
        if (fd < 0)
            return 1;
        close(fd);
        sleep_ms(20);
    }
    return 0;
}

static void test_kill9_and_restart_keeps_sessions(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    /* the victim: the node of the first notebook session, which gets an SGD step first */
    const char *trained = sessions[0].id;
    char victim[48];
    front_id_node(trained, victim, sizeof victim);
    char *delta = tt_json(nb->delta.data, nb->delta.rank, nb->delta.shape, TT_NESTED, 64, 1);
    char *x = tt_json(nb->x.data, nb->x.rank, nb->x.shape, TT_NESTED, 64, 1);
    char *xbody = strf("{\"x\":%s}", x);
    char *step = strf("{\"delta\":%s,\"lr\":0.01}", delta);
    char *dbody = strf("{\"delta\":%s}", delta);
    http_res r;
    front_req("POST", "/forward", xbody, trained, &r);
    expect_status(&r, 200);
    http_res_free(&r);
    front_req("POST", "/backward", step, trained, &r);
    expect_status(&r, 200);
    http_res_free(&r);

    /* W of every session on the victim before the kill */
    char *before[MAX_SESSIONS] = {0};
    int on_victim = 0;
    for (int i = 0; i < n_sessions; i++) {
        char name[48];
        front_id_node(sessions[i].id, name, sizeof name);
        if (strcmp(name, victim) != 0)
            continue;
        long st;
        before[i] = session_W(sessions[i].id, &st);
        if (st != 200 || !before[i])
            fail_msg("GET session %s before the kill: HTTP %ld", sessions[i].id, st);
        on_victim++;
    }
    print_message("killing %s (pid %d), which holds %d sessions\n", victim,
                  (int)node_named(victim)->pid, on_victim);
    assert_true(on_victim >= 2);
    assert_int_equal(kill(node_named(victim)->pid, SIGKILL), 0);
    assert_true(wait_gone(node_named(victim)->pid, 5000));
    /* a killed process's threads may still hold its socket after the leader is a zombie:
     * wait until its port refuses connections */
    assert_true(port_closed(node_named(victim)->url, 5000));

    /* its sessions: 502 from the router, in convd's error shape, naming the node */
    front_req("POST", "/forward", xbody, trained, &r);
    expect_error(&r, 502, "node_unreachable", NULL);
    assert_non_null(strstr(cJSON_GetStringValue(jget(jget(r.json, "error"), "message")), victim));
    assert_string_equal(r.session_id, trained);
    http_res_free(&r);
    /* everything else goes on: new sessions land on the live nodes */
    char *W = tt_json(nb->W.data, nb->W.rank, nb->W.shape, TT_NESTED, 64, 1);
    char *layer = strf("{\"W\":%s}", W);
    for (int k = 0; k < 4; k++) {
        front_req("POST", "/sessions", layer, NULL, &r);
        expect_status(&r, 201);
        char name[48];
        front_id_node(r.session_id, name, sizeof name);
        assert_string_not_equal(name, victim);
        http_res_free(&r);
    }

    char *out;
    int rc = cluster_sh("restart", victim, &out);
    if (rc != 0 || parse_nodes(out) != 1)
        fail_msg("cluster.sh restart %s: exit %d: %s", victim, rc, out);
    free(out);
    assert_int_equal(kill(node_named(victim)->pid, 0), 0);

    /* every session of the victim is back with the same W */
    for (int i = 0; i < n_sessions; i++) {
        if (!before[i])
            continue;
        long st;
        char *after = session_W(sessions[i].id, &st);
        if (st != 200 || !after || strcmp(after, before[i]) != 0)
            fail_msg("session %s after the restart: HTTP %ld, W %s (was %s)", sessions[i].id, st,
                     after ? after : "-", before[i]);
        free(after);
    }
    /* no forward cache survives a restart: 409 until a new forward, then it works */
    front_req("POST", "/backward", dbody, trained, &r);
    expect_error(&r, 409, "no_forward_cache", NULL);
    assert_non_null(
        strstr(cJSON_GetStringValue(jget(jget(r.json, "error"), "message")), "restart"));
    http_res_free(&r);
    front_req("POST", "/forward", xbody, trained, &r);
    expect_status(&r, 200);
    http_res_free(&r);
    front_req("POST", "/backward", dbody, trained, &r);
    expect_status(&r, 200);
    /* dW and db do not depend on W: the fixture's values, after the step too */
    expect_tensor(jget(r.json, "dW"), &nb->dW, TT_NESTED, 0, 0, "dW after restart");
    expect_tensor(jget(r.json, "db"), &nb->db, TT_NESTED, 0, 0, "db after restart");
    http_res_free(&r);
    /* the untrained reference sessions on the victim compute as before */
    int bad = 0;
    for (int i = 0; i < n_sessions; i++) {
        if (before[i] && sessions[i].ref_case >= 0)
            bad += run_case(cJSON_GetArrayItem(jget(cases, "cases"), sessions[i].ref_case),
                            sessions[i].id, 1);
        free(before[i]);
    }
    if (bad)
        fail_msg("%d mismatches on the restarted node's reference sessions", bad);
    free(layer);
    free(W);
    free(dbody);
    free(step);
    free(xbody);
    free(x);
    free(delta);
    passed();
}

static void test_add_keeps_every_session_reachable(void **state)
{
    (void)state;
    char *out;
    int rc = cluster_sh("add", NULL, &out);
    if (rc != 0 || parse_nodes(out) != 1)
        fail_msg("cluster.sh add: exit %d: %s", rc, out);
    free(out);
    assert_int_equal(n_nodes, 4);
    assert_string_equal(nodes[3].name, "n4");

    for (int i = 0; i < n_sessions; i++) {
        char *p = strf("/sessions/%s", sessions[i].id);
        http_res r;
        front_req("GET", p, NULL, NULL, &r);
        if (r.status != 200)
            fail_msg("after add, GET %s: HTTP %ld %s", p, r.status, r.body);
        assert_string_equal(cJSON_GetStringValue(jget(r.json, "session")), sessions[i].id);
        http_res_free(&r);
        free(p);
    }
    int bad = 0;
    for (int i = 0; i < n_sessions; i++)
        if (sessions[i].ref_case >= 0 && i % 5 == 0)
            bad += run_case(cJSON_GetArrayItem(jget(cases, "cases"), sessions[i].ref_case),
                            sessions[i].id, 1);
    if (bad)
        fail_msg("%d mismatches after add", bad);

    /* new sessions reach the new node too */
    int on_new = 0;
    const cJSON *c0 = cJSON_GetArrayItem(jget(cases, "cases"), 0);
    char *layer = json_text(jget(c0, "layer"));
    for (int k = 0; k < 8; k++) {
        http_res r;
        front_req("POST", "/sessions", layer, NULL, &r);
        expect_status(&r, 201);
        char name[48];
        front_id_node(r.session_id, name, sizeof name);
        if (strcmp(name, "n4") == 0) {
            on_new++;
            assert_int_equal(run_case(c0, r.session_id, 1), 0);
        }
        http_res_free(&r);
    }
    free(layer);
    print_message("%d of 8 new sessions on n4\n", on_new);
    assert_true(on_new > 0);
    passed();
}

static void test_down_stops_everything(void **state)
{
    (void)state;
    char *out;
    int rc = cluster_sh("down", NULL, &out);
    if (rc != 0)
        fail_msg("cluster.sh down: exit %d: %s", rc, out);
    free(out);
    for (int i = 0; i < n_nodes; i++)
        if (!wait_gone(nodes[i].pid, 5000))
            fail_msg("node %s (pid %d) still runs after down", nodes[i].name, (int)nodes[i].pid);
    http_res r;
    assert_int_equal(http_do(NULL, front, "GET", "/healthz", NULL, 0, NULL, &r), -1);
    http_res_free(&r);
    passed();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_up_prints_front_and_nodes, count_run),
        cmocka_unit_test_setup(test_cluster_sh_refuses_misuse, count_run),
        cmocka_unit_test_setup(test_notebook_through_front, count_run),
        cmocka_unit_test_setup(test_reference_cases_spread_over_nodes, count_run),
        cmocka_unit_test_setup(test_body_only_reference_is_421_elsewhere, count_run),
        cmocka_unit_test_setup(test_kill9_and_restart_keeps_sessions, count_run),
        cmocka_unit_test_setup(test_add_keeps_every_session_reachable, count_run),
        cmocka_unit_test_setup(test_down_stops_everything, count_run),
    };
    return ITEST_MAIN(tests, group_setup, group_teardown);
}

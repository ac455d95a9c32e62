/*
 * test_router_dns.c — the router of Kubernetes and compose (deploy/nginx/dns.conf.in,
 * rendered by router-start.sh) for real, on loopback: a private dnsmasq plays the cluster
 * DNS (n1.convd.test -> 127.0.0.11, n2 -> .12, n3 -> .13, convd-nodes.convd.test -> all
 * three, like a headless Service), three convd nodes listen on the same port at those
 * addresses, and Debian's nginx routes through that DNS. Checked: new sessions spread
 * over the nodes and each session's requests reach its node (notebook values exact); an
 * id of a node the DNS does not know answers 502 node_unreachable; a node killed with
 * kill -9 answers 502 for its sessions while stateless work goes on, and once restarted
 * at the same address it serves them again with no router reload (the name is looked up
 * at request time).
 */
#include "front.h"
#include "itest.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NODES 3

static char dir[64];
static char front[64];
static int dns_port, node_port;
static pid_t dnsmasq_pid;
static test_daemon *node[NODES];
static char *sessions[16];
static int n_sessions;

/* fork/exec argv in the background, output to log; dies with this process. */
static pid_t spawn_bg(const char *const *argv, const char *log)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(126);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int in = open("/dev/null", O_RDONLY);
    if (fd < 0 || in < 0)
        _exit(126);
    dup2(in, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    execvp(argv[0], (char *const *)argv);
    _exit(127);
}

static int run_quiet(const char *const *cmd)
{
    char *out;
    int rc = daemon_run_cmd(cmd, NULL, 30000, &out);
    if (rc != 0)
        fprintf(stderr, "%s: exit %d: %s\n", cmd[0], rc, out ? out : "");
    free(out);
    return rc;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static int start_dns(void)
{
    char *hosts = strf("%s/hosts", dir);
    char *text = strf("127.0.0.11 n1.convd.test\n127.0.0.12 n2.convd.test\n"
                      "127.0.0.13 n3.convd.test\n127.0.0.11 convd-nodes.convd.test\n"
                      "127.0.0.12 convd-nodes.convd.test\n127.0.0.13 convd-nodes.convd.test\n");
    int rc = write_file(hosts, text);
    free(text);
    struct passwd *pw = getpwuid(getuid());
    for (int attempt = 0; rc == 0 && attempt < 10; attempt++) {
        dns_port = 30000 + rand() % 2000;
        char *port = strf("--port=%d", dns_port), *addn = strf("--addn-hosts=%s", hosts);
        char *user = strf("--user=%s", pw ? pw->pw_name : "root");
        char *log = strf("%s/dnsmasq.log", dir);
        const char *argv[] = {"dnsmasq",
                              "--keep-in-foreground",
                              "--conf-file=/dev/null",
                              "--no-resolv",
                              "--no-hosts",
                              addn,
                              "--listen-address=127.0.0.1",
                              "--bind-interfaces",
                              port,
                              "--local=/test/",
                              "--pid-file=",
                              user,
                              NULL};
        dnsmasq_pid = spawn_bg(argv, log);
        sleep_ms(300);
        int alive = waitpid(dnsmasq_pid, NULL, WNOHANG) == 0;
        free(port);
        free(addn);
        free(user);
        free(log);
        if (alive) {
            free(hosts);
            return 0;
        }
    }
    free(hosts);
    fprintf(stderr, "dnsmasq did not start (see %s/dnsmasq.log)\n", dir);
    return -1;
}

/* Node i (n1..n3) at 127.0.0.1(1+i):node_port on its state dir. */
static test_daemon *start_node(int i)
{
    char *ip = strf("127.0.0.1%d", i + 1), *port = strf("%d", node_port);
    char *name = strf("n%d", i + 1), *state = strf("%s/n%d", dir, i + 1);
    const char *args[] = {"--bind",
                          ip,
                          "--port",
                          port,
                          "--node-name",
                          name,
                          "--state-dir",
                          state,
                          "--max-connections-per-ip",
                          "0",
                          NULL};
    test_daemon *d = daemon_start(args, NULL);
    free(state);
    free(name);
    free(port);
    free(ip);
    return d;
}

/* The same free port on the three addresses (tried at random, at most 10 times). */
static int start_nodes(void)
{
    for (int attempt = 0; attempt < 10; attempt++) {
        node_port = 20000 + rand() % 10000;
        int ok = 1;
        for (int i = 0; i < NODES && ok; i++)
            ok = (node[i] = start_node(i)) != NULL;
        if (ok)
            return 0;
        for (int i = 0; i < NODES; i++) {
            daemon_kill(node[i]);
            node[i] = NULL;
        }
    }
    return -1;
}

/* nginx in its own prefix with router-start.sh's rendering of dns.conf.in. */
static int start_router(void)
{
    char *ngx = strf("%s/nginx", dir), *logs = strf("%s/nginx/logs", dir);
    char *temp = strf("%s/nginx/temp", dir);
    int rc = mkdir(ngx, 0755) || mkdir(logs, 0755) || mkdir(temp, 0755) ? -1 : 0;
    for (int attempt = 0; rc == 0 && attempt < 10; attempt++) {
        int port = 20000 + rand() % 10000;
        char *e_res = strf("CONVD_RESOLVER=127.0.0.1:%d", dns_port);
        char *e_port = strf("CONVD_NODE_PORT=%d", node_port);
        char *e_listen = strf("CONVD_ROUTER_LISTEN=127.0.0.1:%d", port);
        const char *env[] = {e_res,
                             "CONVD_ANY_NODE=convd-nodes.convd.test",
                             "CONVD_NODE_SUFFIX=.convd.test",
                             e_port,
                             e_listen,
                             NULL};
        const char *render[] = {"sh", "deploy/nginx/router-start.sh", "--render", NULL};
        char *conf = NULL, *main_conf = NULL;
        rc = daemon_run_cmd(render, env, 30000, &conf);
        char *sed_prefix = strf("s#@PREFIX@#%s#g", ngx);
        const char *sed[] = {"sed",
                             "-e",
                             sed_prefix,
                             "-e",
                             getuid() == 0 ? "s/@USER@/user root root;/" : "s/@USER@//",
                             "deploy/nginx/standalone.conf.in",
                             NULL};
        if (rc == 0)
            rc = daemon_run_cmd(sed, NULL, 30000, &main_conf);
        char *conf_path = strf("%s/convd.conf", ngx), *main_path = strf("%s/nginx.conf", ngx);
        if (rc == 0)
            rc = write_file(conf_path, conf) || write_file(main_path, main_conf) ? -1 : 0;
        char *prefix = strf("%s/", ngx), *err = strf("%s/error.log", logs);
        const char *nginx = access("/usr/sbin/nginx", X_OK) == 0 ? "/usr/sbin/nginx" : "nginx";
        const char *start[] = {nginx, "-p", prefix, "-c", main_path, "-e", err, NULL};
        char *out = NULL;
        int started = rc == 0 && daemon_run_cmd(start, NULL, 30000, &out) == 0;
        if (!started && rc == 0 && out && !strstr(out, "Address already in use"))
            fprintf(stderr, "nginx did not start: %s\n", out);
        free(out);
        free(err);
        free(prefix);
        free(main_path);
        free(conf_path);
        free(sed_prefix);
        free(main_conf);
        free(conf);
        free(e_listen);
        free(e_port);
        free(e_res);
        if (started) {
            snprintf(front, sizeof front, "http://127.0.0.1:%d", port);
            break;
        }
    }
    free(temp);
    free(logs);
    free(ngx);
    return front[0] ? 0 : -1;
}

static void stop_router(void)
{
    char *pidfile = strf("%s/nginx/nginx.pid", dir);
    FILE *f = fopen(pidfile, "r");
    int pid = 0;
    if (f) {
        if (fscanf(f, "%d", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    if (pid > 1) {
        kill(pid, SIGTERM);
        for (int t = 0; t < 5000 && kill(pid, 0) == 0; t += 20)
            sleep_ms(20);
        if (kill(pid, 0) == 0)
            kill(pid, SIGKILL);
    }
    free(pidfile);
}

static int group_setup(void **state)
{
    (void)state;
    srand((unsigned)getpid());
    snprintf(dir, sizeof dir, "/tmp/convd-router-dns-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    if (start_dns() != 0 || start_nodes() != 0 || start_router() != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    stop_router();
    for (int i = 0; i < NODES; i++) {
        if (node[i] && daemon_stop(node[i]) != 0)
            fprintf(stderr, "node n%d did not stop cleanly\n", i + 1);
    }
    if (dnsmasq_pid > 0) {
        kill(dnsmasq_pid, SIGTERM);
        waitpid(dnsmasq_pid, NULL, 0);
    }
    for (int i = 0; i < n_sessions; i++)
        free(sessions[i]);
    const char *rm[] = {"rm", "-rf", dir, NULL};
    run_quiet(rm);
    return 0;
}

static char *nb_json(const ttensor *t)
{
    char *s = tt_json(t->data, t->rank, t->shape, TT_NESTED, 64, 1);
    assert_non_null(s);
    return s;
}

static void test_dns_spreads_sessions_and_routes_them(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *W = nb_json(&nb->W), *x = nb_json(&nb->x), *delta = nb_json(&nb->delta);
    char *layer = strf("{\"W\":%s}", W), *xbody = strf("{\"x\":%s}", x);
    char *dbody = strf("{\"delta\":%s}", delta);
    int per_node[NODES] = {0};
    for (int k = 0; k < 12; k++) {
        http_res r;
        front_do(front, "POST", "/sessions", layer, NULL, &r);
        expect_status(&r, 201);
        char name[48];
        front_id_node(r.session_id, name, sizeof name);
        assert_true(name[0] == 'n' && name[1] >= '1' && name[1] <= '3' && name[2] == '\0');
        per_node[name[1] - '1']++;
        sessions[n_sessions++] = strdup(r.session_id);
        char *id = sessions[n_sessions - 1];
        http_res_free(&r);

        char *fwd = k % 2 ? strf("/sessions/%s/forward", id) : strdup("/forward");
        front_do(front, "POST", fwd, xbody, k % 2 ? NULL : id, &r);
        expect_status(&r, 200);
        expect_tensor(jget(r.json, "y"), &nb->y, TT_NESTED, 0, 0, "y");
        http_res_free(&r);
        front_do(front, "POST", "/backward", dbody, id, &r);
        expect_status(&r, 200);
        expect_tensor(jget(r.json, "dx"), &nb->dx, TT_NESTED, 0, 0, "dx");
        expect_tensor(jget(r.json, "dW"), &nb->dW, TT_NESTED, 0, 0, "dW");
        expect_tensor(jget(r.json, "db"), &nb->db, TT_NESTED, 0, 0, "db");
        http_res_free(&r);
        free(fwd);
    }
    int used = 0;
    for (int i = 0; i < NODES; i++) {
        print_message("n%d holds %d of 12 sessions\n", i + 1, per_node[i]);
        used += per_node[i] > 0;
    }
    assert_true(used >= 2);
    for (int i = 0; i < NODES; i++) {
        char *p = strf("/nodes/n%d/readyz", i + 1);
        http_res r;
        front_do(front, "GET", p, NULL, NULL, &r);
        expect_status(&r, 200);
        http_res_free(&r);
        free(p);
    }
    free(dbody);
    free(xbody);
    free(layer);
    free(delta);
    free(x);
    free(W);
}

static void test_dns_unknown_node_is_502(void **state)
{
    (void)state;
    http_res r;
    front_do(front, "GET", "/sessions/n9.0123456789abcdef0123456789abcdef", NULL, NULL, &r);
    expect_error(&r, 502, "node_unreachable", NULL);
    assert_non_null(strstr(cJSON_GetStringValue(jget(jget(r.json, "error"), "message")), "n9"));
    assert_string_equal(r.session_id, "n9.0123456789abcdef0123456789abcdef");
    http_res_free(&r);
}

/* The first session of node `name`, or NULL. */
static const char *session_of(const char *name)
{
    for (int i = 0; i < n_sessions; i++) {
        char n[48];
        front_id_node(sessions[i], n, sizeof n);
        if (strcmp(n, name) == 0)
            return sessions[i];
    }
    return NULL;
}

static void test_dns_node_back_at_same_address_needs_no_reload(void **state)
{
    (void)state;
    /* the victim: n2, or n1 if no session went to n2 */
    const char *id = session_of("n2") ? session_of("n2") : session_of("n1");
    assert_non_null(id);
    int v = id[1] - '1';
    char *p = strf("/sessions/%s?output=flat", id);
    http_res r;
    front_do(front, "GET", p, NULL, NULL, &r);
    expect_status(&r, 200);
    char *before = raw_member(r.body, "W");
    http_res_free(&r);

    daemon_kill(node[v]);
    node[v] = NULL;
    front_do(front, "GET", p, NULL, NULL, &r);
    expect_error(&r, 502, "node_unreachable", NULL);
    http_res_free(&r);
    /* stateless work goes on: the dead address is skipped */
    const notebook *nb = notebook_get();
    char *W = nb_json(&nb->W), *x = nb_json(&nb->x), *delta = nb_json(&nb->delta);
    char *stateless = strf("{\"layer\":{\"W\":%s},\"x\":%s,\"delta\":%s}", W, x, delta);
    for (int k = 0; k < 6; k++) {
        front_do(front, "POST", "/backward", stateless, NULL, &r);
        expect_status(&r, 200);
        expect_tensor(jget(r.json, "dW"), &nb->dW, TT_NESTED, 0, 0, "stateless dW");
        http_res_free(&r);
    }

    node[v] = start_node(v);
    assert_non_null(node[v]);
    front_do(front, "GET", p, NULL, NULL, &r);
    expect_status(&r, 200);
    char *after = raw_member(r.body, "W");
    assert_non_null(after);
    assert_string_equal(after, before);
    http_res_free(&r);
    free(after);
    free(before);
    free(stateless);
    free(delta);
    free(x);
    free(W);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dns_spreads_sessions_and_routes_them),
        cmocka_unit_test(test_dns_unknown_node_is_502),
        cmocka_unit_test(test_dns_node_back_at_same_address_needs_no_reload),
    };
    return ITEST_MAIN(tests, group_setup, group_teardown);
}

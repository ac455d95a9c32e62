/*
 * test_deploy.c — the files an operator deploys with (deploy/): the YAML passes
 * `yamllint --strict` (deploy/.yamllint); the Kubernetes manifests and compose.yaml agree
 * with each other and with the Dockerfile (names, labels, selectors, ports, the state dir
 * and its VOLUME, the node name, probes, a grace period above drain_timeout); the router ConfigMap
 * holds deploy/nginx's files byte for byte; and both nginx configs (render.sh's for fixed nodes,
 * router-start.sh's for DNS) pass `nginx -t` on Debian's nginx, while bad input to the scripts is
 * refused. YAML is read through Debian's python3-yaml (yamllint's own dependency) as JSON. Runs
 * from the source tree's top (tests/run.sh does); starts no convd.
 */
#include "itest.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Debian's nginx is in /usr/sbin, which a non-root PATH may lack. */
static const char *nginx_bin(void)
{
    return access("/usr/sbin/nginx", X_OK) == 0 ? "/usr/sbin/nginx" : "nginx";
}

/* Runs cmd (NULL-terminated) for at most 60 s; returns the exit code, *out its output. */
static int run(const char *const *cmd, const char *const *env, char **out)
{
    int rc = daemon_run_cmd(cmd, env, 60000, out);
    if (!*out)
        *out = strdup("");
    assert_non_null(*out);
    return rc;
}

/* Every YAML document of a file, as a cJSON array. */
static cJSON *yaml_load(const char *path)
{
    static const char prog[] = "import json, sys, yaml\n"
                               "with open(sys.argv[1]) as f:\n"
                               "    json.dump(list(yaml.safe_load_all(f)), sys.stdout)\n";
    const char *cmd[] = {"/usr/bin/python3", "-c", prog, path, NULL};
    char *out;
    int rc = run(cmd, NULL, &out);
    if (rc != 0)
        fail_msg("cannot read %s as YAML (exit %d): %s", path, rc, out);
    cJSON *docs = cJSON_Parse(out);
    free(out);
    assert_true(cJSON_IsArray(docs));
    return docs;
}

/* A member by dotted path ("spec.template.spec.containers.0"), or NULL. */
static const cJSON *at(const cJSON *node, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    for (char *seg = strtok_r(buf, ".", &save); seg && node; seg = strtok_r(NULL, ".", &save)) {
        char *end;
        long i = strtol(seg, &end, 10);
        node = *end == '\0' && cJSON_IsArray(node) ? cJSON_GetArrayItem(node, (int)i)
                                                   : cJSON_GetObjectItemCaseSensitive(node, seg);
    }
    return node;
}

/* The string at path; fails the test (naming what) when absent. */
static const char *str_at(const cJSON *node, const char *path, const char *what)
{
    const char *s = cJSON_GetStringValue(at(node, path));
    if (!s)
        fail_msg("%s: no string at %s", what, path);
    return s;
}

static int num_at(const cJSON *node, const char *path, const char *what)
{
    const cJSON *n = at(node, path);
    if (!cJSON_IsNumber(n))
        fail_msg("%s: no number at %s", what, path);
    return n->valueint;
}

/* The document of this kind and name among docs. */
static const cJSON *find_doc(const cJSON *docs, const char *kind, const char *name)
{
    const cJSON *d;
    cJSON_ArrayForEach(d, docs)
    {
        const char *k = cJSON_GetStringValue(at(d, "kind"));
        const char *n = cJSON_GetStringValue(at(d, "metadata.name"));
        if (k && n && strcmp(k, kind) == 0 && strcmp(n, name) == 0)
            return d;
    }
    fail_msg("no %s named %s in deploy/k8s", kind, name);
    return NULL;
}

/* Whether every key: value of sel is in labels. */
static int selects(const cJSON *sel, const cJSON *labels)
{
    if (!cJSON_IsObject(sel) || cJSON_GetArraySize(sel) == 0)
        return 0;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, sel)
    {
        const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(labels, kv->string));
        if (!v || !cJSON_IsString(kv) || strcmp(v, kv->valuestring) != 0)
            return 0;
    }
    return 1;
}

/* An env entry of a container by name (its object), or NULL. */
static const cJSON *env_entry(const cJSON *container, const char *name)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, at(container, "env"))
    {
        const char *n = cJSON_GetStringValue(at(e, "name"));
        if (n && strcmp(n, name) == 0)
            return e;
    }
    return NULL;
}

static const char *env_value(const cJSON *container, const char *name)
{
    const cJSON *e = env_entry(container, name);
    const char *v = e ? cJSON_GetStringValue(at(e, "value")) : NULL;
    if (!v)
        fail_msg("container %s has no env %s with a value", str_at(container, "name", "container"),
                 name);
    return v;
}

/* A container port given as a number or by name -> its number. */
static int container_port(const cJSON *container, const cJSON *ref)
{
    if (cJSON_IsNumber(ref))
        return ref->valueint;
    assert_true(cJSON_IsString(ref));
    const cJSON *p;
    cJSON_ArrayForEach(p, at(container, "ports"))
    {
        const char *n = cJSON_GetStringValue(at(p, "name"));
        if (n && strcmp(n, ref->valuestring) == 0)
            return num_at(p, "containerPort", "container port");
    }
    fail_msg("container %s has no port named %s", str_at(container, "name", "container"),
             ref->valuestring);
    return -1;
}

/* "30s", "1m", "1m30s" -> seconds. */
static int duration_s(const char *s)
{
    int total = 0, n = 0, digits = 0;
    for (; *s; s++) {
        if (*s >= '0' && *s <= '9') {
            n = n * 10 + (*s - '0');
            digits++;
        } else if ((*s == 's' || *s == 'm' || *s == 'h') && digits) {
            total += n * (*s == 'h' ? 3600 : *s == 'm' ? 60 : 1);
            n = digits = 0;
        } else {
            fail_msg("cannot read the duration '%s'", s);
        }
    }
    assert_int_equal(digits, 0);
    return total;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

/* Every document of deploy/k8s/ but the kustomization, in one array. */
static cJSON *k8s_docs(void)
{
    static const char *const files[] = {"statefulset.yaml", "headless-service.yaml", "pdb.yaml",
                                        "router.yaml"};
    cJSON *all = cJSON_CreateArray();
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "deploy/k8s/%s", files[i]);
        cJSON *docs = yaml_load(path);
        while (cJSON_GetArraySize(docs) > 0)
            cJSON_AddItemToArray(all, cJSON_DetachItemFromArray(docs, 0));
        cJSON_Delete(docs);
    }
    return all;
}

static void test_yamllint(void **state)
{
    (void)state;
    const char *cmd[] = {
        "yamllint", "--strict", "-c", "deploy/.yamllint", "deploy/k8s", "deploy/compose.yaml",
        NULL};
    char *out;
    int rc = run(cmd, NULL, &out);
    if (rc != 0)
        fail_msg("yamllint --strict exit %d:\n%s", rc, out);
    free(out);
}

/* The kustomization lists exactly the manifests the other tests read. */
static void test_kustomization_lists_every_manifest(void **state)
{
    (void)state;
    cJSON *k = yaml_load("deploy/k8s/kustomization.yaml");
    const cJSON *res = at(k, "0.resources");
    assert_int_equal(cJSON_GetArraySize(res), 4);
    static const char *const want[] = {"statefulset.yaml", "headless-service.yaml", "pdb.yaml",
                                       "router.yaml"};
    for (int i = 0; i < 4; i++) {
        int found = 0;
        const cJSON *r;
        cJSON_ArrayForEach(r, res)
        {
            found += cJSON_IsString(r) && strcmp(r->valuestring, want[i]) == 0;
        }
        if (found != 1)
            fail_msg("kustomization.yaml does not list %s once", want[i]);
    }
    cJSON_Delete(k);
}

/* StatefulSet, headless Service and PDB: one set of node labels, one port, the state dir
 * on the claim, the node name from the pod name, probes, requests, grace > drain. */
static void test_k8s_nodes_agree(void **state)
{
    (void)state;
    cJSON *docs = k8s_docs();
    const cJSON *sts = find_doc(docs, "StatefulSet", "convd");
    const char *svc_name = str_at(sts, "spec.serviceName", "StatefulSet");
    const cJSON *svc = find_doc(docs, "Service", svc_name);
    assert_string_equal(str_at(svc, "spec.clusterIP", "headless Service"), "None");

    const cJSON *labels = at(sts, "spec.template.metadata.labels");
    assert_true(selects(at(sts, "spec.selector.matchLabels"), labels));
    assert_true(selects(at(svc, "spec.selector"), labels));
    const cJSON *pdb = find_doc(docs, "PodDisruptionBudget", "convd");
    assert_true(selects(at(pdb, "spec.selector.matchLabels"), labels));

    const cJSON *c = at(sts, "spec.template.spec.containers.0");
    assert_non_null(c);
    int port = atoi(env_value(c, "CONVD_PORT"));
    assert_int_equal(container_port(c, at(svc, "spec.ports.0.targetPort")), port);
    assert_int_equal(num_at(svc, "spec.ports.0.port", "headless Service"), port);
    assert_int_equal(container_port(c, at(c, "livenessProbe.httpGet.port")), port);
    assert_int_equal(container_port(c, at(c, "readinessProbe.httpGet.port")), port);
    assert_string_equal(str_at(c, "livenessProbe.httpGet.path", "liveness"), "/healthz");
    assert_string_equal(str_at(c, "readinessProbe.httpGet.path", "readiness"), "/readyz");

    const cJSON *name = env_entry(c, "CONVD_NODE_NAME");
    assert_non_null(name);
    assert_string_equal(str_at(name, "valueFrom.fieldRef.fieldPath", "CONVD_NODE_NAME"),
                        "metadata.name");

    /* CONVD_STATE_DIR is where the volume claim template is mounted. */
    const char *dir = env_value(c, "CONVD_STATE_DIR");
    const char *claim = str_at(sts, "spec.volumeClaimTemplates.0.metadata.name", "claim");
    int mounted = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, at(c, "volumeMounts"))
    {
        if (strcmp(str_at(m, "name", "volumeMount"), claim) == 0)
            mounted = strcmp(str_at(m, "mountPath", "volumeMount"), dir) == 0;
    }
    if (!mounted)
        fail_msg("the claim '%s' is not mounted at CONVD_STATE_DIR %s", claim, dir);

    assert_non_null(at(c, "resources.requests.cpu"));
    assert_non_null(at(c, "resources.requests.memory"));
    int grace = num_at(sts, "spec.template.spec.terminationGracePeriodSeconds", "StatefulSet");
    int drain = atoi(env_value(c, "CONVD_DRAIN_TIMEOUT"));
    if (grace <= drain)
        fail_msg("terminationGracePeriodSeconds %d must exceed drain_timeout %d", grace, drain);
    cJSON_Delete(docs);
}

/* The router: its labels are not the nodes' (else the headless Service and the PDB would
 * count router pods as nodes), its Service selects it, it mounts its ConfigMap, and it
 * builds node names from the headless Service and the nodes' port. */
static void test_k8s_router_agrees(void **state)
{
    (void)state;
    cJSON *docs = k8s_docs();
    const cJSON *sts = find_doc(docs, "StatefulSet", "convd");
    const cJSON *node_labels = at(sts, "spec.template.metadata.labels");
    const char *headless = str_at(sts, "spec.serviceName", "StatefulSet");
    const cJSON *nodes_svc = find_doc(docs, "Service", headless);
    const cJSON *pdb = find_doc(docs, "PodDisruptionBudget", "convd");
    const cJSON *dep = find_doc(docs, "Deployment", "convd-router");
    const cJSON *labels = at(dep, "spec.template.metadata.labels");
    const cJSON *svc = find_doc(docs, "Service", "convd");

    assert_true(selects(at(dep, "spec.selector.matchLabels"), labels));
    assert_true(selects(at(svc, "spec.selector"), labels));
    assert_false(selects(at(svc, "spec.selector"), node_labels));
    assert_false(selects(at(nodes_svc, "spec.selector"), labels));
    assert_false(selects(at(pdb, "spec.selector.matchLabels"), labels));

    const cJSON *c = at(dep, "spec.template.spec.containers.0");
    const cJSON *node = at(sts, "spec.template.spec.containers.0");
    assert_string_equal(env_value(c, "CONVD_NODE_PORT"), env_value(node, "CONVD_PORT"));
    char *any = strf("%s.$(POD_NAMESPACE).svc.cluster.local", headless);
    char *suffix = strf(".%s", any);
    assert_string_equal(env_value(c, "CONVD_ANY_NODE"), any);
    assert_string_equal(env_value(c, "CONVD_NODE_SUFFIX"), suffix);
    free(any);
    free(suffix);
    assert_string_equal(
        str_at(env_entry(c, "POD_NAMESPACE"), "valueFrom.fieldRef.fieldPath", "POD_NAMESPACE"),
        "metadata.namespace");

    int listen = atoi(env_value(c, "CONVD_ROUTER_LISTEN"));
    assert_int_equal(container_port(c, at(svc, "spec.ports.0.targetPort")), listen);
    assert_int_equal(container_port(c, at(c, "readinessProbe.httpGet.port")), listen);
    assert_string_equal(str_at(c, "readinessProbe.httpGet.path", "router readiness"),
                        "/router/healthz");

    /* command runs router-start.sh from where the ConfigMap volume is mounted */
    const char *cm = str_at(dep, "spec.template.spec.volumes.0.configMap.name", "router volume");
    find_doc(docs, "ConfigMap", cm);
    const char *vol = str_at(dep, "spec.template.spec.volumes.0.name", "router volume");
    const char *mount = NULL;
    const cJSON *m;
    cJSON_ArrayForEach(m, at(c, "volumeMounts"))
    {
        if (strcmp(str_at(m, "name", "mount"), vol) == 0)
            mount = str_at(m, "mountPath", "mount");
    }
    assert_non_null(mount);
    char *script = strf("%s/router-start.sh", mount);
    assert_string_equal(str_at(c, "command.1", "router command"), script);
    free(script);
    cJSON_Delete(docs);
}

static void test_k8s_configmap_is_deploy_nginx(void **state)
{
    (void)state;
    cJSON *docs = k8s_docs();
    const cJSON *cm = find_doc(docs, "ConfigMap", "convd-router");
    static const char *const files[] = {"convd-map.conf", "convd-proxy.conf", "dns.conf.in",
                                        "router-start.sh"};
    assert_int_equal(cJSON_GetArraySize(at(cm, "data")), 4);
    for (size_t i = 0; i < 4; i++) {
        char path[128];
        snprintf(path, sizeof path, "deploy/nginx/%s", files[i]);
        char *want = slurp(path);
        const char *got =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(at(cm, "data"), files[i]));
        if (!got || strcmp(got, want) != 0)
            fail_msg("deploy/k8s/router.yaml's ConfigMap key %s differs from %s: run "
                     "deploy/k8s/sync-configmap.sh",
                     files[i], path);
        free(want);
    }
    cJSON_Delete(docs);
}

/* compose.yaml: every node's name is its service name, its own volume is at the state dir,
 * its grace period exceeds drain_timeout, the router lists every node and uses their
 * port; and the numbers match the Kubernetes nodes'. */
static void test_compose_agrees(void **state)
{
    (void)state;
    cJSON *compose = yaml_load("deploy/compose.yaml");
    cJSON *docs = k8s_docs();
    const cJSON *k8s_node =
        at(find_doc(docs, "StatefulSet", "convd"), "spec.template.spec.containers.0");
    const cJSON *services = at(compose, "0.services");
    const cJSON *router = at(services, "router");
    assert_non_null(router);
    const char *listed = str_at(router, "environment.CONVD_NODES", "router");
    assert_null(at(router, "environment.CONVD_ANY_NODE"));
    const char *node_port = str_at(router, "environment.CONVD_NODE_PORT", "router");
    assert_string_equal(str_at(router, "environment.CONVD_NODE_SUFFIX", "router"), "");
    assert_string_equal(node_port, env_value(k8s_node, "CONVD_PORT"));

    int nodes = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, services)
    {
        const cJSON *env = at(s, "environment");
        if (!cJSON_GetObjectItemCaseSensitive(env, "CONVD_NODE_NAME"))
            continue;
        nodes++;
        assert_string_equal(str_at(env, "CONVD_NODE_NAME", s->string), s->string);
        assert_string_equal(str_at(env, "CONVD_PORT", s->string), node_port);
        const char *dir = str_at(env, "CONVD_STATE_DIR", s->string);
        assert_string_equal(dir, env_value(k8s_node, "CONVD_STATE_DIR"));
        char *vol = strf("%s-state:%s", s->string, dir);
        assert_string_equal(str_at(s, "volumes.0", s->string), vol);
        char *top = strf("%s-state", s->string);
        if (!cJSON_GetObjectItemCaseSensitive(at(compose, "0.volumes"), top))
            fail_msg("compose.yaml declares no volume %s", top);
        free(top);
        free(vol);
        const char *drain = str_at(env, "CONVD_DRAIN_TIMEOUT", s->string);
        assert_string_equal(drain, env_value(k8s_node, "CONVD_DRAIN_TIMEOUT"));
        int grace = duration_s(str_at(s, "stop_grace_period", s->string));
        if (grace <= atoi(drain))
            fail_msg("%s: stop_grace_period %d s must exceed drain_timeout %s s", s->string, grace,
                     drain);
        char *word = strf(" %s ", s->string), *padded = strf(" %s ", listed);
        if (!strstr(padded, word))
            fail_msg("the router's CONVD_NODES '%s' does not list node %s", listed, s->string);
        free(padded);
        free(word);
        int dep = 0;
        const cJSON *d;
        cJSON_ArrayForEach(d, at(router, "depends_on"))
        {
            dep += cJSON_IsString(d) && strcmp(d->valuestring, s->string) == 0;
        }
        if (dep != 1)
            fail_msg("the router does not depend on node %s", s->string);
    }
    if (nodes < 2)
        fail_msg("compose.yaml has %d nodes; a cluster needs at least 2", nodes);
    assert_int_equal(cJSON_GetArraySize(at(router, "depends_on")), nodes);
    int words = 0;
    for (const char *p = listed; *p; p++)
        words += *p != ' ' && (p == listed || p[-1] == ' ');
    assert_int_equal(words, nodes);
    /* the image itself declares that state dir (so a new volume is the convd user's) */
    char *docker = slurp("Dockerfile");
    const char *dir = env_value(k8s_node, "CONVD_STATE_DIR");
    char *volume = strf("\nVOLUME %s\n", dir), *env = strf("CONVD_STATE_DIR=%s", dir);
    char *volume_json = strf("\nVOLUME [\"%s\"]\n", dir);
    if ((!strstr(docker, volume) && !strstr(docker, volume_json)) || !strstr(docker, env))
        fail_msg("the Dockerfile should set CONVD_STATE_DIR=%s and declare VOLUME %s", dir, dir);
    free(volume_json);
    free(env);
    free(volume);
    free(docker);
    assert_string_equal(str_at(router, "volumes.0", "router"), "./nginx:/etc/convd-router:ro");
    assert_string_equal(str_at(router, "entrypoint.1", "router"),
                        "/etc/convd-router/router-start.sh");
    char *published =
        strf("127.0.0.1:%s:%s", str_at(router, "environment.CONVD_ROUTER_LISTEN", "router"),
             str_at(router, "environment.CONVD_ROUTER_LISTEN", "router"));
    assert_string_equal(str_at(router, "ports.0", "router"), published);
    free(published);
    cJSON_Delete(docs);
    cJSON_Delete(compose);
}

/* nginx -t on a rendered http-context config, inside the standalone main config cluster.sh
 * uses (so the check needs no root and touches nothing of the system's nginx). */
static void nginx_check(const char *conf_text)
{
    char dir[] = "/tmp/convd-deploy-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *conf = strf("%s/convd.conf", dir);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fputs(conf_text, f);
    fclose(f);
    char *main_conf = strf("%s/nginx.conf", dir);
    char *logs = strf("%s/logs", dir);
    char *temp = strf("%s/temp", dir);
    assert_int_equal(mkdir(logs, 0755), 0);
    assert_int_equal(mkdir(temp, 0755), 0);
    char *sed_prefix = strf("s#@PREFIX@#%s#g", dir);
    const char *sed[] = {
        "sed", "-e", sed_prefix, "-e", "s/@USER@//", "deploy/nginx/standalone.conf.in", NULL};
    char *text;
    assert_int_equal(run(sed, NULL, &text), 0);
    f = fopen(main_conf, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    free(text);
    char *prefix = strf("%s/", dir);
    char *err = strf("%s/error.log", logs);
    const char *t[] = {nginx_bin(), "-t", "-p", prefix, "-c", main_conf, "-e", err, NULL};
    char *out;
    int rc = run(t, NULL, &out);
    if (rc != 0)
        fail_msg("nginx -t failed (exit %d):\n%s\nconfig:\n%s", rc, out, conf_text);
    free(out);
    const char *rm[] = {"rm", "-rf", dir, NULL};
    run(rm, NULL, &out);
    free(out);
    free(err);
    free(prefix);
    free(sed_prefix);
    free(temp);
    free(logs);
    free(main_conf);
    free(conf);
}

/* Whether a template placeholder (@UPPER_CASE@) survived the rendering. */
static int has_placeholder(const char *s)
{
    for (const char *p = strchr(s, '@'); p; p = strchr(p + 1, '@')) {
        size_t n = strspn(p + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_");
        if (n > 0 && p[1 + n] == '@') {
            print_error("placeholder left: %.*s\n", (int)n + 2, p);
            return 1;
        }
    }
    return 0;
}

static void test_render_static_passes_nginx_t(void **state)
{
    (void)state;
    const char *cmd[] = {"deploy/nginx/render.sh", "127.0.0.1:18080", "n1=127.0.0.1:18081",
                         "node-2=10.0.0.2:8080",   "x=[::1]:8082",    NULL};
    char *out;
    assert_int_equal(run(cmd, NULL, &out), 0);
    /* one upstream per node and the spread over all of them */
    assert_non_null(strstr(out, "upstream convd_n1 {\n    server 127.0.0.1:18081;"));
    assert_non_null(strstr(out, "upstream convd_node-2 {\n    server 10.0.0.2:8080;"));
    assert_non_null(strstr(
        out,
        "upstream convd_all {\n    zone convd_all 64k;\n    server 127.0.0.1:18081;\n    server "
        "10.0.0.2:8080;\n    server [::1]:8082;\n}"));
    assert_non_null(strstr(out, "node-2  convd_node-2;"));
    assert_non_null(strstr(out, "listen 127.0.0.1:18080;"));
    assert_false(has_placeholder(out));
    assert_null(strstr(out, "include convd-"));
    nginx_check(out);
    free(out);
}

static void test_render_refuses_bad_nodes(void **state)
{
    (void)state;
    static const char *const bad[][4] = {
        {"8080", "N1=127.0.0.1:1", NULL, "is not [a-z0-9-]"},
        {"8080", "n1=127.0.0.1", NULL, "is not NAME=HOST:PORT"},
        {"8080", "n1", NULL, "is not NAME=HOST:PORT"},
        {"8080", "n1=a;b:1", NULL, "is not NAME=HOST:PORT"},
        {"8080", "n1=h:1", "n1=h:2", "listed twice"},
        {"80;", "n1=h:1", NULL, "bad listen address"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *cmd[] = {"deploy/nginx/render.sh", bad[i][0], bad[i][1], bad[i][2], NULL};
        char *out;
        int rc = run(cmd, NULL, &out);
        if (rc != 2 || !strstr(out, bad[i][3]))
            fail_msg("render.sh %s %s: exit %d, '%s' (want 2 and '%s')", bad[i][1],
                     bad[i][2] ? bad[i][2] : "", rc, out, bad[i][3]);
        free(out);
    }
}

static void test_router_start_dns_passes_nginx_t(void **state)
{
    (void)state;
    const char *cmd[] = {"sh", "deploy/nginx/router-start.sh", "--render", NULL};
    const char *env[] = {"CONVD_RESOLVER=127.0.0.1",
                         "CONVD_ANY_NODE=convd-nodes.prod.svc.cluster.local",
                         "CONVD_NODE_SUFFIX=.convd-nodes.prod.svc.cluster.local",
                         "CONVD_NODE_PORT=8080",
                         "CONVD_ROUTER_LISTEN=127.0.0.1:18080",
                         NULL};
    char *out;
    assert_int_equal(run(cmd, env, &out), 0);
    assert_non_null(strstr(out, "resolver 127.0.0.1 valid=5s"));
    assert_non_null(strstr(out, "\"\"       convd-nodes.prod.svc.cluster.local:8080;"));
    assert_non_null(strstr(out, "$convd_node.convd-nodes.prod.svc.cluster.local:8080;"));
    assert_false(has_placeholder(out));
    nginx_check(out);
    free(out);

    /* compose: the nodes listed, in an upstream resolved at start */
    const char *listed[] = {"CONVD_RESOLVER=127.0.0.1", "CONVD_NODES=localhost", NULL};
    assert_int_equal(run(cmd, listed, &out), 0);
    assert_non_null(strstr(out, "upstream convd_any {\n    zone convd_any 64k;\n    server "
                                "localhost:8080;\n}"));
    assert_non_null(strstr(out, "\"\"       convd_any;"));
    assert_false(has_placeholder(out));
    nginx_check(out);
    free(out);

    const char *no_any[] = {"CONVD_RESOLVER=127.0.0.1", NULL};
    assert_int_equal(run(cmd, no_any, &out), 2);
    assert_non_null(strstr(out, "CONVD_ANY_NODE is not set"));
    free(out);
    const char *both[] = {"CONVD_RESOLVER=127.0.0.1", "CONVD_ANY_NODE=a", "CONVD_NODES=n1", NULL};
    assert_int_equal(run(cmd, both, &out), 2);
    assert_non_null(strstr(out, "not both"));
    free(out);
    const char *bad_node[] = {"CONVD_RESOLVER=127.0.0.1", "CONVD_NODES=n1 N2", NULL};
    assert_int_equal(run(cmd, bad_node, &out), 2);
    assert_non_null(strstr(out, "'N2' is not a node name"));
    free(out);
    const char *bad_suffix[] = {"CONVD_RESOLVER=127.0.0.1", "CONVD_ANY_NODE=nodes",
                                "CONVD_NODE_SUFFIX=nodes;", NULL};
    assert_int_equal(run(cmd, bad_suffix, &out), 2);
    assert_non_null(strstr(out, "CONVD_NODE_SUFFIX"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yamllint),
        cmocka_unit_test(test_kustomization_lists_every_manifest),
        cmocka_unit_test(test_k8s_nodes_agree),
        cmocka_unit_test(test_k8s_router_agrees),
        cmocka_unit_test(test_k8s_configmap_is_deploy_nginx),
        cmocka_unit_test(test_compose_agrees),
        cmocka_unit_test(test_render_static_passes_nginx_t),
        cmocka_unit_test(test_render_refuses_bad_nodes),
        cmocka_unit_test(test_router_start_dns_passes_nginx_t),
    };
    return ITEST_MAIN(tests, NULL, NULL);
}

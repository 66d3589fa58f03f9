import groovy.json.JsonOutput
import groovy.json.JsonSlurperClassic

import java.nio.file.Files

/**
 * The Jenkins front end's tests, run in one JVM: the shared library's sailPipeline, the generated
 * project's Jenkinsfile (baked with the real cookiecutter) and this repository's Jenkinsfile run
 * under PipelineHarness; every `sail` command sequence is compared with tests/ci_parity.yaml.
 * Prints PASS/FAIL per test and a last line "N passed, N failed"; exit status 1 on any failure.
 */
class HarnessMain {
    static final String APPROVERS = 'ml-approvers'
    static final String JENKINSFILE = "@Library('sail-pipelines@test') _\nsailPipeline(approvers: '${APPROVERS}')\n"
    static final List<String> MAIN_STAGES = ['CI', 'What this build keeps', 'Project tests', 'Build images', 'Validate and split', 'Train candidates', 'Evaluate', 'Gate',
                                             'Push data and model', 'Package', 'Smoke test', 'Publish', 'Deploy to staging', 'Live evidence',
                                             'Promote to production']
    static final List<String> DELIVERY_STAGES = MAIN_STAGES.drop(8)
    static final String MONITOR_STAGE = 'Monitor production'
    static final String TIMER = 'hudson.triggers.TimerTrigger$TimerTriggerCause'
    static final Map MONITOR = [log: 's3://acme-ml/predictions/', window: '24h']
    static final String MONITORED = "@Library('sail-pipelines@test') _\n" +
            "sailPipeline(approvers: '${APPROVERS}', monitor: [log: '${MONITOR.log}'])\n"
    /** Values the stubs supply for the ci_parity.yaml placeholders. */
    static final Map<String, String> VALUES = [version: '7', champion: '6', approver: 'alice',
                                               log: MONITOR.log, window: MONITOR.window]
    static final Map CHAMPION = [version: '6', run_id: 'r6', metrics: [roc_auc: 0.97]]
    /** The line `sail evidence` leaves in reports/evidence.json (a canary analysed in staging). */
    static final String EVIDENCE_LINE = 'live evidence: canary in staging: pass (canary at 25%: promote: no breach; 1200 requests, 2026-12-07T01:00:00+00:00) [reports/live/canary-staging.json]'
    static final Map<String, Map> CREDENTIALS = [
            'sail-signing-key': [secret: 'signing-secret-4f9a0c'],
            'sail-verify-key' : [secret: 'verify-key-8e21d5'],
            'sail-audit-key'  : [secret: 'audit-secret-70b3c1'],
            'github-token'    : [secret: 'ghp-secret-1b7e22'],
            'team-registry'   : [username: 'ci-bot', password: 'registry-secret-93d1'],
            'team-aws'        : [username: 'AKIAEXAMPLE', password: 'aws-secret-5c0e77'],
            'team-mlflow'     : [username: 'ci-bot', password: 'mlflow-secret-0aa4'],
    ]
    static final Map ALL_CREDENTIALS = [approvers: APPROVERS, registryCredentials: 'team-registry', awsCredentials: 'team-aws',
                                        mlflowCredentials: 'team-mlflow']

    final File here
    final File root
    final File library
    final File fixtures
    final File venvBin
    private File tmp
    private final Map<String, File> bakes = [:]
    private final Map<File, List<String>> candidatesOf = [:]
    private Map<String, List<String>> parityCache
    private final List<Map> tests = []

    HarnessMain(File here) {
        this.here = here.canonicalFile
        root = this.here.parentFile.parentFile
        library = new File(root, 'shared-library')
        fixtures = new File(this.here, 'fixtures')
        venvBin = new File(System.getenv('SAIL_VENV_BIN') ?: new File(root, '.venv/bin').path)
    }

    int run(List<String> args) {
        String only = null
        boolean demoFailure = false
        for (int i = 0; i < args.size(); i++) {
            if (args[i] == '--only' && i + 1 < args.size()) { only = args[++i] }
            else if (args[i] == '--demo-failure') { demoFailure = true }
            else {
                System.err.println('usage: groovy tests/jenkins/run.groovy [--only TEXT] [--demo-failure]')
                return 2
            }
        }
        define()
        List<Map> selected = tests.findAll { it.deliberate == demoFailure && (only == null || it.name.contains(only)) }
        tmp = Files.createTempDirectory('sail-jenkins-harness').toFile()
        int passed = 0
        int failed = 0
        try {
            for (Map t in selected) {
                try {
                    ((Closure) t.body).call()
                    println "PASS  ${t.name}"
                    passed++
                } catch (Throwable e) {
                    println "FAIL  ${t.name}"
                    println((e instanceof AssertionError ? e.message : e.toString() + '\n' + e.stackTrace.take(12).join('\n')).readLines().collect { '      ' + it }.join('\n'))
                    failed++
                }
            }
        } finally {
            tmp.deleteDir()
        }
        println "${passed} passed, ${failed} failed"
        return (failed > 0 || passed == 0) ? 1 : 0
    }

    private void test(String name, Closure body) { tests.add([name: name, body: body, deliberate: false]) }

    private void deliberatelyFailing(String name, Closure body) { tests.add([name: name, body: body, deliberate: true]) }

    // ---- helpers ----

    /** A harness with the stubs of one event: candidates, a passing (or failing) gate, the reports later steps read. */
    PipelineHarness harness(Map o = [:]) {
        PipelineHarness h = new PipelineHarness(library)
        if (o.pr) {
            h.globalEnv.putAll([BRANCH_NAME: 'PR-4', CHANGE_ID: '4', CHANGE_TARGET: 'main', JOB_NAME: 'sail-model/PR-4',
                                CHANGE_URL: 'https://github.com/acme/sail-model/pull/4'])
        }
        if (o.branch) { h.globalEnv.putAll([BRANCH_NAME: o.branch, JOB_NAME: "sail-model/${o.branch}".toString()]) }
        h.credentials.putAll(CREDENTIALS)
        Map champion = o.containsKey('champion') ? (Map) o.champion : CHAMPION
        Map gate = o.gateFails ? [verdict: 'fail', registered_version: null, champion: champion]
                               : [verdict: 'pass', registered_version: VALUES.version, champion: champion, accepted_bundle_id: 'b7']
        h.shRules.addAll((List) (o.rules ?: []))
        h.shRules.addAll([
                [pattern: 'sail candidates', stdout: JsonOutput.toJson(o.candidates ?: candidates(bake())) + '\n'],
                [pattern: 'sail gate( --no-register)?', exit: o.gateFails ? 1 : 0, writes: ['reports/gate.json': gate]],
                [pattern: 'sail report.*', writes: ['reports/report.md': '# gate report\n']],
                [pattern: 'sail package', writes: ['reports/package.json': [image: '127.0.0.1:5000/sail-model/inference:0a1b2c3d4e5f-v7', version: '7']]],
                [pattern: 'sail publish', writes: ['reports/publish.json': [images: ['127.0.0.1:5000/sail-model/inference:0a1b2c3d4e5f-v7': 'sha256:00']]]],
                // A canary analysed in staging's workspace: its evidence goes along to the promotion.
                [pattern: 'sail deploy --environment staging', writes: ['reports/live/canary-staging.json': [kind: 'canary', decision: 'pass']]],
                [pattern: 'sail evidence .*', writes: ['reports/evidence.json': [version: VALUES.version, line: EVIDENCE_LINE]]],
        ])
        if (o.timer) { h.causes = [TIMER] }
        if (o.breach != null) {
            String line = 'x1: drift PSI 0.912 above monitoring.max_psi 0.2'
            Map report = [breaches: o.breach ? [line] : []]
            h.shRules.add(0, [pattern: 'sail monitor .*', exit: o.breach ? 1 : 0,
                              writes : ['reports/monitor.json': report]])
        }
        if (o.reject) { h.inputAnswer = [approve: false, user: 'alice'] }
        if (o.superseded) { h.newerBuildPassed = [2] as Set }
        return h
    }

    /** What a build did, for failure messages; secrets masked as Jenkins masks them in its log. */
    static String summary(PipelineHarness h) {
        String text = "result ${h.result}; errors: ${h.errors}; stages: ${h.stages.collect { "${it.path} (${it.status})" }}; sail: ${Checks.sailCommands(h)}"
        return h.secretValues().inject(text) { String acc, String secret -> acc.replace(secret, '****') }
    }

    List<String> event(String name, List<String> candidates, Map<String, String> values = VALUES) {
        Checks.expected(parity()[name], candidates, values)
    }

    static List<String> ran(PipelineHarness h) { h.stages.findAll { it.status == 'ran' }*.name }

    static List<Map> sh(PipelineHarness h, String prefix) {
        h.calls.findAll { it.step == 'sh' && it.commands.any { String c -> c.startsWith(prefix) } }
    }

    private String exec(List<String> command, File dir = null) {
        ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true)
        if (dir != null) { pb.directory(dir) }
        pb.environment().put('PATH', venvBin.path + File.pathSeparator + System.getenv('PATH'))
        File gitconfig = new File(tmp, 'gitconfig')
        gitconfig.text = '[user]\n\tname = Jenkins Harness\n\temail = harness@example.invalid\n[init]\n\tdefaultBranch = main\n'
        pb.environment().put('GIT_CONFIG_GLOBAL', gitconfig.path)
        Process p = pb.start()
        String out = p.inputStream.text
        int status = p.waitFor()
        if (status != 0) { throw new AssertionError("${command.join(' ')} exited ${status}:\n${out}".toString()) }
        return out
    }

    /**
     * sh rules that run the real `sail` (commands matching `pattern`) in a baked project, with the
     * step's environment as a Jenkins agent gives it (JENKINS_URL set). The harness's stand-in
     * secrets are no keys, so the development key signs instead.
     */
    List<Map> realSail(File project, String pattern) {
        Closure run = { List<String> words, Map<String, String> env ->
            List<String> command = [new File(venvBin, 'sail').path, '--project', project.path] + words.drop(1)
            ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true)
            Map<String, String> given = pb.environment()
            given.keySet().removeAll(['CI', 'GITHUB_ACTIONS', 'SAIL_SIGNING_KEY', 'SAIL_VERIFY_KEY', 'SAIL_AUDIT_KEY'])
            env.each { k, v -> if (v != null && !(k in ['SAIL_SIGNING_KEY', 'SAIL_VERIFY_KEY', 'SAIL_AUDIT_KEY'])) { given.put(k, v.toString()) } }
            given.putAll([JENKINS_URL: 'https://jenkins.example.com/', SAIL_ALLOW_DEV_KEY: '1'])
            given.put('PATH', venvBin.path + File.pathSeparator + System.getenv('PATH'))
            Process p = pb.start()
            String out = p.inputStream.text
            return [exit: p.waitFor(), output: out]
        }
        return [[pattern: "(${pattern})( .*)?".toString(), run: run]]
    }

    /** The template baked by the real cookiecutter with these answers (once per set of answers). */
    File bake(Map<String, String> answers = [:]) {
        String key = answers.toString()
        if (!bakes.containsKey(key)) {
            File out = new File(tmp, "bake-${bakes.size()}")
            File config = new File(tmp, 'cookiecutter.yaml')
            config.text = "cookiecutters_dir: ${new File(tmp, 'cc').path}\nreplay_dir: ${new File(tmp, 'replay').path}\n"
            exec([new File(venvBin, 'cookiecutter').path, '--no-input', '--config-file', config.path, '-o', out.path,
                  new File(root, 'cookiecutter-sail').path] + answers.collect { k, v -> "${k}=${v}".toString() })
            bakes[key] = out.listFiles().find { it.isDirectory() }
        }
        return bakes[key]
    }

    /** The candidates of a baked project, from the real `sail candidates`. */
    List<String> candidates(File project) {
        if (!candidatesOf.containsKey(project)) {
            String out = exec([new File(venvBin, 'sail').path, '--project', project.path, 'candidates'])
            candidatesOf[project] = (List<String>) new JsonSlurperClassic().parseText(out)
        }
        return candidatesOf[project]
    }

    /** tests/ci_parity.yaml, read with PyYAML from the project's virtualenv. */
    Map<String, List<String>> parity() {
        if (parityCache == null) {
            String json = exec([new File(venvBin, 'python').path, '-c',
                                'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))',
                                new File(root, 'tests/ci_parity.yaml').path])
            parityCache = (Map<String, List<String>>) new JsonSlurperClassic().parseText(json)
        }
        return parityCache
    }

    // ---- the tests ----

    void define() {
        test('every vars/*.groovy step has a vars/*.txt beside it') {
            List<String> problems = Checks.undocumented(new File(library, 'vars'))
            assert problems.isEmpty(): problems.join('\n')
        }

        test('main: the stages run in order and the build succeeds') {
            PipelineHarness h = harness()
            h.runJenkinsfile(JENKINSFILE)
            assert h.result == 'SUCCESS': summary(h)
            assert ran(h) == MAIN_STAGES: summary(h)
        }

        test('main: sail commands equal ci_parity.yaml push-main, then promote') {
            PipelineHarness h = harness()
            h.runJenkinsfile(JENKINSFILE)
            List<String> cands = candidates(bake())
            List<String> problems = Checks.parity(Checks.sailCommands(h), event('push-main', cands) + event('promote', cands))
            assert problems.isEmpty(): problems.join('\n') + '\n' + summary(h)
        }

        test('main: every sail command runs in its own stage, on the agent') {
            PipelineHarness h = harness()
            h.runJenkinsfile(JENKINSFILE)
            Map<String, String> stageOf = ['sail doctor --ci': 'CI / What this build keeps', 'sail test': 'CI / Project tests',
                                           'sail build': 'CI / Build images', 'sail validate': 'CI / Validate and split',
                                           'sail split': 'CI / Validate and split', 'sail train': 'CI / Train candidates',
                                           'sail evaluate': 'CI / Evaluate', 'sail gate': 'CI / Gate', 'sail report': 'CI / Gate',
                                           'sail push': 'CI / Push data and model', 'sail package': 'CI / Package',
                                           'sail smoke': 'CI / Smoke test', 'sail publish': 'CI / Publish',
                                           'sail deploy --environment staging': 'CI / Deploy to staging',
                                           'sail evidence': 'CI / Live evidence',
                                           'sail promote': 'Promote to production',
                                           'sail deploy --environment production': 'Promote to production']
            List<Map> calls = h.calls.findAll { it.step == 'sh' && !it.returnStdout }
            assert calls: summary(h)
            for (Map call in calls) {
                String command = call.commands[0]
                String key = stageOf.keySet().find { command.startsWith(it) }
                assert key != null && call.stage == stageOf[key] && call.node == 'sail': "${command} ran in '${call.stage}' on ${call.node}"
            }
            Map report = sh(h, 'sail report')[0]
            assert report.post == 'always': 'the report runs in the post { always } of the Gate stage'
        }

        test('main, gate fails: the report still runs, nothing after the gate (ci_parity push-main-gate-fails)') {
            PipelineHarness h = harness(gateFails: true)
            h.runJenkinsfile(JENKINSFILE)
            assert h.result == 'FAILURE': summary(h)
            List<String> problems = Checks.parity(Checks.sailCommands(h), event('push-main-gate-fails', candidates(bake())))
            assert problems.isEmpty(): problems.join('\n')
            assert sh(h, 'sail push').isEmpty() && !h.calls.any { it.step == 'input' }: summary(h)
            assert h.stages.findAll { it.status == 'skipped: earlier failure' }*.name == DELIVERY_STAGES: summary(h)
            assert h.calls.any { it.step == 'archiveArtifacts' && it.files.contains('reports/gate.json') }: 'the gate verdict is archived'
        }

        test('pull request: report posted, no push, no deploy, no approval (ci_parity pull-request)') {
            PipelineHarness h = harness(pr: true)
            h.runJenkinsfile(JENKINSFILE)
            assert h.result == 'SUCCESS': summary(h)
            List<String> problems = Checks.parity(Checks.sailCommands(h), event('pull-request', candidates(bake())))
            assert problems.isEmpty(): problems.join('\n')
            List<String> skipped = h.stages.findAll { it.status == 'skipped: when' }*.name
            assert skipped == [MONITOR_STAGE] + DELIVERY_STAGES: summary(h)
            assert !h.calls.any { it.step in ['input', 'milestone', 'lock', 'stash'] }: summary(h)
            assert sh(h, 'sail report --post')[0].credentials.contains('GITHUB_TOKEN')
        }

        test('pull request: the report is posted to the repository of CHANGE_URL, or the one configured') {
            PipelineHarness h = harness(pr: true)
            h.runJenkinsfile(JENKINSFILE)
            assert sh(h, 'sail report --post')[0].env.GITHUB_REPOSITORY == 'acme/sail-model': summary(h)
            PipelineHarness configured = harness(pr: true)
            configured.runStep('sailPipeline', [approvers: APPROVERS, githubRepository: 'acme/other'])
            assert sh(configured, 'sail report --post')[0].env.GITHUB_REPOSITORY == 'acme/other': summary(configured)
            PipelineHarness unknown = harness(pr: true)
            unknown.globalEnv.remove('CHANGE_URL')
            unknown.runJenkinsfile(JENKINSFILE)
            assert unknown.result == 'FAILURE' && sh(unknown, 'sail report').isEmpty(): summary(unknown)
            assert unknown.errors == ["sailReport: set githubRepository: 'owner/name' (CHANGE_URL '' names no GitHub pull request)"]
        }

        test('other branches: judged and reported like a pull request, registered and delivered nowhere') {
            PipelineHarness h = harness(branch: 'feature-x')
            h.runJenkinsfile(JENKINSFILE)
            assert h.result == 'SUCCESS': summary(h)
            List<String> ran = Checks.sailCommands(h)
            assert ran.contains('sail gate --no-register') && ran.contains('sail report') && !ran.contains('sail report --post'): ran
            List<String> skipped = h.stages.findAll { it.status == 'skipped: when' }*.name
            assert skipped == [MONITOR_STAGE] + DELIVERY_STAGES: summary(h)
        }

        test('pull request, gate fails: the report is still posted') {
            PipelineHarness h = harness(pr: true, gateFails: true)
            h.runJenkinsfile(JENKINSFILE)
            assert h.result == 'FAILURE': summary(h)
            List<String> problems = Checks.parity(Checks.sailCommands(h), event('pull-request', candidates(bake())))
            assert problems.isEmpty(): problems.join('\n')
        }

        test('promotion: input with submitter, no agent or lock while waiting; milestone and lock around promote') {
            PipelineHarness h = harness()
            h.runJenkinsfile(JENKINSFILE)
            List<String> problems = Checks.promotion(h, APPROVERS, 'sail-model/main-production')
            assert problems.isEmpty(): problems.join('\n') + '\n' + summary(h)
            Map promote = sh(h, 'sail promote')[0]
            assert promote.node == 'sail' && promote.env.SAIL_APPROVER == 'alice': summary(h)
            assert h.calls.find { it.step == 'milestone' }.ordinal == 1 && sh(h, 'sail deploy --environment staging')[0].milestones == [1]
            assert h.calls.findAll { it.step == 'unstash' }*.stage == ['Promote to production']
        }

        test('promotion: sail evidence runs before the input, whose message carries its line') {
            PipelineHarness h = harness()
            h.runJenkinsfile(JENKINSFILE)
            Map evidence = sh(h, 'sail evidence')[0]
            Map input = h.calls.find { it.step == 'input' }
            assert evidence != null && h.calls.indexOf(evidence) < h.calls.indexOf(input): summary(h)
            assert evidence.env.SAIL_PROMOTE_VERSION == VALUES.version: summary(h)
            assert input.message.endsWith('into production?\n' + EVIDENCE_LINE): input.message
            assert h.calls.find { it.step == 'stash' }.files.contains('reports/live/canary-staging.json'): summary(h)
        }

        test('promotion: the first model promotes with --expect-champion none') {
            PipelineHarness h = harness(champion: null)
            h.runJenkinsfile(JENKINSFILE)
            List<String> problems = Checks.parity(Checks.sailCommands(h).takeRight(3), event('promote', [], VALUES + [champion: 'none']))
            assert problems.isEmpty(): problems.join('\n')
        }

        test('promotion: a rejected input promotes nothing and aborts the build') {
            PipelineHarness h = harness(reject: true)
            h.runJenkinsfile(JENKINSFILE)
            assert h.result == 'ABORTED': summary(h)
            // The live evidence is said before the question; nothing after it runs.
            List<String> cands = candidates(bake())
            List<String> problems = Checks.parity(Checks.sailCommands(h), event('push-main', cands) + event('promote', cands).take(1))
            assert problems.isEmpty(): problems.join('\n')
        }

        test('promotion: a build superseded by a newer approved one stops at the milestone') {
            PipelineHarness h = harness(superseded: true)
            h.runJenkinsfile(JENKINSFILE)
            assert h.result == 'NOT_BUILT': summary(h)
            assert sh(h, 'sail promote').isEmpty() && sh(h, 'sail deploy --environment production').isEmpty(): summary(h)
            assert !h.calls.any { it.step == 'lock' && it.resource.endsWith('-production') }: summary(h)
        }

        test('project tests: a failing one fails the build before anything is built or trained, its summary in the log (ci_parity tests-fail)') {
            File project = new File(tmp, 'failing-project-tests')
            exec(['cp', '-r', bake().path, project.path])
            new File(project, 'tests/test_broken.py').text = 'def test_deliberately_broken():\n    assert 1 + 1 == 3\n'
            PipelineHarness h = harness(rules: realSail(project, 'sail test'))
            h.runJenkinsfile(JENKINSFILE)
            assert h.result == 'FAILURE': summary(h)
            List<String> problems = Checks.parity(Checks.sailCommands(h), event('tests-fail', []))
            assert problems.isEmpty(): problems.join('\n') + '\n' + summary(h)
            assert !h.calls.any { it.step == 'sh' && it.script == 'sail candidates' }: summary(h)
            assert h.stages.findAll { it.status == 'skipped: earlier failure' }*.name == MAIN_STAGES.drop(3): summary(h)
            String log = sh(h, 'sail test')[0].output
            assert log.contains('FAILED tests/test_broken.py::test_deliberately_broken'): log
            def counts = log =~ /(?m)^=+ (1 failed, \d+ passed(?:, \d+ skipped)?) in /
            assert counts: log
            assert log.readLines().findAll { it.contains(': error: ') } == ["sail test: error: 1 of the project's tests failed " +
                    "(${counts[0][1]}): tests/test_broken.py::test_deliberately_broken; pytest's report is above".toString()]: log
        }

        test('training: one parallel branch per candidate, each running its own container') {
            PipelineHarness h = harness()
            h.runJenkinsfile(JENKINSFILE)
            List<String> cands = candidates(bake())
            List<Map> parallels = h.calls.findAll { it.step == 'parallel' }
            assert parallels.size() == 1 && parallels[0].branches == cands.collect { "train ${it}".toString() }: summary(h)
            int query = h.calls.findIndexOf { it.step == 'sh' && it.script == 'sail candidates' && it.returnStdout }
            assert query >= 0 && query < h.calls.indexOf(parallels[0]): 'sail candidates is asked before the fan-out'
            for (String c in cands) {
                List<Map> trains = sh(h, "sail train --container --candidate ${c}")
                assert trains*.branch == ["train ${c}".toString()] && trains[0].credentials == ['SAIL_SIGNING_KEY']: summary(h)
            }
        }

        test('training: a failing candidate fails the build before evaluation') {
            List<String> cands = candidates(bake())
            PipelineHarness h = harness(rules: [[pattern: "sail train --container --candidate ${cands[0]}".toString(), exit: 1]])
            h.runJenkinsfile(JENKINSFILE)
            assert h.result == 'FAILURE' && sh(h, 'sail evaluate').isEmpty() && sh(h, 'sail gate').isEmpty(): summary(h)
        }

        test('credentials: bound by withCredentials only where needed, never in sh or echo text') {
            Map sign = [SAIL_SIGNING_KEY: 1], verify = [SAIL_VERIFY_KEY: 1], audit = [SAIL_AUDIT_KEY: 1], gh = [GITHUB_TOKEN: 1]
            Map reg = [SAIL_REGISTRY_USERNAME: 1, SAIL_REGISTRY_PASSWORD: 1]
            Map aws = [AWS_ACCESS_KEY_ID: 1, AWS_SECRET_ACCESS_KEY: 1]
            Map ml = [MLFLOW_TRACKING_USERNAME: 1, MLFLOW_TRACKING_PASSWORD: 1]
            // The private bundle key only where signing happens; the audit key only for the promotion.
            Map<String, Map> needs = ['sail doctor --ci': [:], 'sail test': [:], 'sail build': reg + aws, 'sail validate': [:], 'sail split': [:], 'sail train': sign,
                                      'sail evaluate': verify + aws + ml, 'sail gate': sign + aws + ml, 'sail report --post': gh,
                                      'sail report': [:], 'sail push': aws, 'sail package': verify + reg + aws + ml,
                                      'sail smoke': verify, 'sail publish': sign + reg + aws, 'sail deploy': verify + reg + aws + ml,
                                      'sail promote': audit + verify + reg + aws + ml, 'sail evidence': aws + ml, 'sail candidates': [:]]
            for (Map event in [[:], [pr: true]]) {
                PipelineHarness h = harness(event)
                h.runStep('sailPipeline', ALL_CREDENTIALS)
                List<String> problems = Checks.leaks(h)
                assert problems.isEmpty(): problems.join('\n')
                assert h.result == 'SUCCESS': summary(h)
                for (Map call in h.calls.findAll { it.step == 'sh' }) {
                    String key = needs.keySet().find { call.commands[0].startsWith(it) }
                    assert key != null && (call.credentials as Set) == needs[key].keySet(): "${call.commands[0]} ran with ${call.credentials}"
                }
                assert h.calls.findAll { it.step == 'withCredentials' }*.ids.flatten().every { it in CREDENTIALS.keySet() }
            }
            List<String> problems = Checks.interpolatedSecrets(new File(library, 'vars'))
            assert problems.isEmpty(): problems.join('\n')
        }

        test('credentials: a secret given in config.environment is refused before any sail command') {
            PipelineHarness h = harness()
            h.runStep('sailPipeline', [approvers: APPROVERS, environment: [SAIL_SIGNING_KEY: 'signing-secret-4f9a0c']])
            assert h.result == 'FAILURE' && Checks.sailCommands(h).isEmpty(): summary(h)
            assert h.errors[0].contains('SAIL_SIGNING_KEY is a secret'): summary(h)
        }

        test('settings: environment reaches every sail command; bad settings are refused with one line') {
            PipelineHarness h = harness()
            h.runStep('sailPipeline', [approvers: APPROVERS, environment: [MLFLOW_TRACKING_URI: 'http://127.0.0.1:5050']])
            List<Map> steps = h.calls.findAll { it.step == 'sh' && !it.returnStdout }
            assert steps && steps.every { it.env.MLFLOW_TRACKING_URI == 'http://127.0.0.1:5050' }: summary(h)
            Map<Map, String> refused = [[approvers: APPROVERS, aprovers: 'x']                 : 'unknown setting(s) aprovers',
                                        [:]                                                  : 'approvers must name who may promote',
                                        [approvers: 'ml approvers; rm -rf /']               : 'approvers must name who may promote',
                                        [approvers: APPROVERS, environment: ['BAD NAME': 1]]: "'BAD NAME' is not an environment variable name"]
            refused.each { Map config, String message ->
                PipelineHarness bad = harness()
                bad.runStep('sailPipeline', config)
                assert bad.result == 'FAILURE' && bad.errors.size() == 1 && bad.errors[0].contains(message): summary(bad)
                assert Checks.sailCommands(bad).isEmpty(): summary(bad)
            }
        }

        test('stores, nothing configured: sail doctor --ci heads the log; the gate refuses with one line, nothing after it') {
            PipelineHarness h = harness(rules: realSail(bake(), 'sail doctor --ci|sail gate'))
            h.runJenkinsfile(JENKINSFILE)
            assert h.result == 'FAILURE': summary(h)
            List<Map> steps = h.calls.findAll { it.step == 'sh' && !it.returnStdout }
            assert steps[0].commands == ['sail doctor --ci'] && steps[0].output.contains('- LOSES '): summary(h)
            assert steps[0].output.contains('Refused in CI until that is set: gate, push,'): steps[0].output
            // one error line (the other is the warning of the development key the harness signs with)
            List<String> gate = sh(h, 'sail gate')[0].output.readLines().findAll { it.contains(': error: ') }
            assert gate.size() == 1 && gate[0].startsWith('sail gate: error: in CI this would lose '): gate
            assert gate[0].contains("MLFLOW_TRACKING_URI in the Jenkinsfile's sailPipeline(environment: [...])"): gate
            assert sh(h, 'sail push').isEmpty() && ran(h).contains('Gate') && !ran(h).contains('Package'): summary(h)
        }

        test('stores, team environment: sail doctor --ci says every step keeps its work; the build delivers') {
            Map team = [MLFLOW_TRACKING_URI: 'https://mlflow.example.com', SAIL_DVC_REMOTE_URL: 's3://acme-ml/sail-model',
                        SAIL_REGISTRY: 'registry.example.com/ml']
            PipelineHarness h = harness(rules: realSail(bake(), 'sail doctor --ci'))
            h.runStep('sailPipeline', [approvers: APPROVERS, environment: team])
            assert h.result == 'SUCCESS' && ran(h) == MAIN_STAGES: summary(h)
            String doctor = sh(h, 'sail doctor --ci')[0].output
            assert doctor.contains('Every step keeps its work.') && !doctor.contains('LOSES'): doctor
            assert doctor.contains('tracking server https://mlflow.example.com'): doctor
        }

        test('generated Jenkinsfile (default answers): pins the library release and runs the pipeline') {
            File project = bake()
            String text = new File(project, 'Jenkinsfile').text
            assert text.contains("@Library('sail-pipelines@v0.1.0') _"): text
            assert text.contains("sailPipeline(approvers: 'ml-approvers',"): text
            assert text.contains("monitor: [log: '', window: '24h', retrain: false]"): text
            PipelineHarness h = harness()
            h.runJenkinsfile(text)
            assert h.libraries == ['sail-pipelines': 'v0.1.0'] && h.result == 'SUCCESS': summary(h)
            List<String> cands = candidates(project)
            List<String> problems = Checks.parity(Checks.sailCommands(h), event('push-main', cands) + event('promote', cands))
            problems += Checks.promotion(h, 'ml-approvers', 'sail-model/main-production')
            assert problems.isEmpty(): problems.join('\n')
        }

        test('generated Jenkinsfile (custom answers): release tag, approvers and candidates flow through') {
            File project = bake([task: 'regression', approvers: 'alice,bob', sail_pipelines_version: 'v2.3.4'])
            String text = new File(project, 'Jenkinsfile').text
            List<String> cands = candidates(project)
            assert cands.contains('ridge'): "regression candidates from params.yaml: ${cands}"
            PipelineHarness h = harness(candidates: cands)
            h.runJenkinsfile(text)
            assert h.libraries == ['sail-pipelines': 'v2.3.4'] && h.result == 'SUCCESS': summary(h)
            assert h.calls.find { it.step == 'input' }.submitter == 'alice,bob'
            List<String> problems = Checks.parity(Checks.sailCommands(h), event('push-main', cands) + event('promote', cands))
            assert problems.isEmpty(): problems.join('\n')
        }

        test("this repository's Jenkinsfile: bakes the template, runs make test, keeps junit results even on failure") {
            String text = new File(root, 'Jenkinsfile').text
            for (int status in [0, 2]) {
                PipelineHarness h = harness(rules: [[pattern: 'make test .*', exit: status]])
                h.runJenkinsfile(text)
                assert h.result == (status == 0 ? 'SUCCESS' : 'FAILURE'): summary(h)
                List<String> commands = h.calls.findAll { it.step == 'sh' }.collectMany { it.commands }
                assert commands.any { it.contains('cookiecutter --no-input') } && commands.any { it.startsWith('make test') && it.contains('--junitxml=') }: commands
                assert h.calls.findAll { it.step == 'sh' && it.commands.any { c -> c.startsWith('make test') } }.every { it.env.CI == 'true' }
                Map junit = h.calls.find { it.step == 'junit' }
                assert junit != null && junit.post == 'always' && junit.node != null: summary(h)
            }
        }

        test('monitoring: a cron trigger on main once a log is named; ' +
                'its builds run only sail monitor (ci_parity monitor)') {
            PipelineHarness plain = harness()
            plain.runJenkinsfile(JENKINSFILE)
            assert plain.model.triggers == [[name: 'cron', spec: '']]: 'no log named: no schedule'
            PipelineHarness pr = harness(pr: true)
            pr.runJenkinsfile(MONITORED)
            assert pr.model.triggers == [[name: 'cron', spec: '']]: 'pull requests: no schedule'
            PipelineHarness push = harness()
            push.runJenkinsfile(MONITORED)
            assert push.model.triggers == [[name: 'cron', spec: 'H 6 * * *']]: summary(push)
            assert ran(push) == MAIN_STAGES: summary(push)
            PipelineHarness h = harness(timer: true, breach: false)
            h.runJenkinsfile(MONITORED)
            assert h.result == 'SUCCESS' && ran(h) == [MONITOR_STAGE]: summary(h)
            List<String> problems = Checks.parity(Checks.sailCommands(h), event('monitor', []))
            assert problems.isEmpty(): problems.join('\n')
            Map call = sh(h, 'sail monitor')[0]
            assert call.node == 'sail' && call.credentials == ['SAIL_VERIFY_KEY']: summary(h)
            assert !h.calls.any { it.step in ['input', 'build'] }: summary(h)
            List<Map> archived = h.calls.findAll { it.step == 'archiveArtifacts' }
            assert archived*.files.flatten().contains('reports/monitor.json'): summary(h)
        }

        test('monitoring: a breach fails the build; ' +
                'with retrain it starts a full build of the job, without it none') {
            for (boolean retrain in [false, true]) {
                PipelineHarness h = harness(timer: true, breach: true)
                h.runStep('sailPipeline', [approvers: APPROVERS,
                                           monitor  : MONITOR + [retrain: retrain]])
                assert h.result == 'FAILURE': summary(h)
                assert h.errors[0].startsWith('script returned exit code 1'): summary(h)
                List<Map> builds = h.calls.findAll { it.step == 'build' }
                assert builds*.job == (retrain ? ['/sail-model/main'] : []): summary(h)
                assert builds.every { it.wait == false }: summary(h)
            }
            // The build it starts is not the timer's: the whole pipeline runs
            // (ci_parity push-main, then promote).
            PipelineHarness retrained = harness()
            retrained.causes = ['hudson.model.Cause$UpstreamCause']
            retrained.runStep('sailPipeline', [approvers: APPROVERS,
                                               monitor  : MONITOR + [retrain: true]])
            List<String> cands = candidates(bake())
            List<String> full = event('push-main', cands) + event('promote', cands)
            List<String> problems = Checks.parity(Checks.sailCommands(retrained), full)
            assert problems.isEmpty(): problems.join('\n')
        }

        test('monitoring: a monitor that fails without judging (no report) starts no retraining') {
            PipelineHarness h = harness(timer: true, rules: [[pattern: 'sail monitor .*', exit: 1]])
            h.runStep('sailPipeline', [approvers: APPROVERS, monitor: MONITOR + [retrain: true]])
            assert h.result == 'FAILURE' && !h.calls.any { it.step == 'build' }: summary(h)
        }

        test('monitoring: bad monitor settings are refused with one line before any sail command') {
            Map<Object, String> refused = [
                    (MONITOR + [window: 'daily'])      : 'monitor.window must be',
                    (MONITOR + [retrain: 'yes'])       : 'monitor.retrain must be true or false',
                    (MONITOR + [shedule: 'H * * * *']) : 'unknown monitor setting(s) shedule',
                    's3://acme-ml/predictions/'        : 'monitor must be a map']
            refused.each { Object monitor, String message ->
                PipelineHarness bad = harness(timer: true)
                bad.runStep('sailPipeline', [approvers: APPROVERS, monitor: monitor])
                assert bad.result == 'FAILURE' && bad.errors.size() == 1: summary(bad)
                assert bad.errors[0].contains(message): summary(bad)
                assert Checks.sailCommands(bad).isEmpty(): summary(bad)
            }
        }

        test('generated Jenkinsfile (retrain_on_breach yes): ' +
                'monitoring retrains once its log is named') {
            String text = new File(bake([retrain_on_breach: 'yes']), 'Jenkinsfile').text
            assert text.contains("monitor: [log: '', window: '24h', retrain: true]"): text
            PipelineHarness h = harness(timer: true, breach: true)
            h.runJenkinsfile(text.replace("log: ''", "log: '${MONITOR.log}'"))
            assert h.result == 'FAILURE': summary(h)
            assert h.calls.findAll { it.step == 'build' }*.job == ['/sail-model/main']: summary(h)
            assert Checks.parity(Checks.sailCommands(h), event('monitor', [])).isEmpty(): summary(h)
        }

        // ---- the checks and the harness itself can fail ----

        test('harness: the docs check flags a step without .txt and a .txt without step') {
            List<String> problems = Checks.undocumented(new File(fixtures, 'undocumented/vars'))
            assert problems == ['vars/sailOrphan.groovy has no vars/sailOrphan.txt', 'vars/sailStray.txt documents no step']: problems
        }

        test('harness: the leak checks catch a step that interpolates a secret in Groovy') {
            PipelineHarness h = harness()
            h.useLibrary('test', [sailPublish: new File(fixtures, 'leaky/vars/sailPublish.groovy')])
            h.runStep('sailPipeline', ALL_CREDENTIALS)
            List<String> runtime = Checks.leaks(h)
            assert runtime.size() == 2 && runtime[0].startsWith('echo ') && runtime[1].startsWith('sh ') && !runtime.any { it.contains('registry-secret-93d1') }: runtime
            List<String> source = Checks.interpolatedSecrets(new File(fixtures, 'leaky/vars'))
            assert source.size() == 1 && source[0].contains('SAIL_REGISTRY_PASSWORD'): source
        }

        test('harness: the parity check catches a missing sail command') {
            PipelineHarness h = harness()
            h.useLibrary('test', [sailPrepare: new File(fixtures, 'broken/vars/sailPrepare.groovy')])
            h.runStep('sailPipeline', [approvers: APPROVERS])
            List<String> cands = candidates(bake())
            List<String> problems = Checks.parity(Checks.sailCommands(h), event('push-main', cands) + event('promote', cands))
            assert problems.size() == 1 && problems[0].contains("expected 'sail split', ran 'sail train"): problems
        }

        test('harness: the promotion check catches an input that holds an executor') {
            PipelineHarness h = harness()
            h.runJenkinsfile(new File(fixtures, 'HeldExecutor.Jenkinsfile').text)
            assert h.result == 'SUCCESS': summary(h)
            List<String> problems = Checks.promotion(h, APPROVERS, 'sail-model/main-production')
            assert problems == ["input waits holding an executor (agent 'sail')", "top-level agent is 'label 'sail'', not none"]: problems
        }

        test('harness: sh outside an agent fails the build, as in Jenkins') {
            PipelineHarness h = harness()
            h.runJenkinsfile("pipeline {\n agent none\n stages {\n stage('A') {\n steps { sh 'sail build' }\n }\n }\n}\n")
            assert h.result == 'FAILURE' && h.errors[0].contains('hudson.FilePath is missing'): summary(h)
        }

        test('harness: an unknown step fails the build and names the step') {
            PipelineHarness h = harness()
            h.runJenkinsfile("pipeline {\n agent { label 'x' }\n stages {\n stage('A') {\n steps { shh 'sail build' }\n }\n }\n}\n")
            assert h.result == 'FAILURE' && h.errors[0].contains('shh()'): summary(h)
        }

        deliberatelyFailing('deliberately failing: claims the leaky fixture shows no secret (run with --demo-failure)') {
            PipelineHarness h = harness(candidates: ['only_one'])
            h.useLibrary('test', [sailPublish: new File(fixtures, 'leaky/vars/sailPublish.groovy')])
            h.runStep('sailPipeline', ALL_CREDENTIALS)
            List<String> problems = Checks.leaks(h)
            assert problems.isEmpty(): problems.join('\n')
        }
    }
}

import groovy.json.JsonOutput
import groovy.json.JsonSlurperClassic
import org.codehaus.groovy.control.CompilerConfiguration
import org.codehaus.groovy.control.customizers.ImportCustomizer
import org.codehaus.groovy.runtime.InvokerHelper

import java.util.regex.Pattern

/**
 * Runs Jenkins pipeline scripts (a Jenkinsfile, the shared library's vars/) outside Jenkins, in
 * the spirit of JenkinsPipelineUnit: every Jenkins step is a stub that records the call, in
 * order, with its context (stage, agent, locks held, credentials bound, parallel branch,
 * milestones passed). `sh` answers from configurable rules (exit code, stdout, files written),
 * agents get a fresh workspace, and the declarative DSL is interpreted by Declarative.
 */
class PipelineHarness {
    /** A step failed (error, non-zero sh, missing credentials...): the build result is FAILURE. */
    static class Failure extends RuntimeException {
        Failure(String message) { super(message) }
    }

    /** The build was stopped (input rejected, superseded at a milestone). */
    static class Abort extends RuntimeException {
        final String result
        Abort(String result, String message) { super(message); this.result = result }
    }

    /** The script did something the harness does not model, or misused it. */
    static class HarnessError extends RuntimeException {
        HarnessError(String message, Throwable cause = null) { super(message, cause) }
    }

    static final String LIBRARY = 'sail-pipelines'
    static final List<String> RESULTS = ['SUCCESS', 'UNSTABLE', 'FAILURE', 'NOT_BUILT', 'ABORTED']
    private static final Map<String, Class> COMPILED = [:]

    // ---- configuration (set by a test before running) ----
    final File libraryDir
    Map<String, String> globalEnv = [BUILD_NUMBER: '12', JOB_NAME: 'sail-model/main', BRANCH_NAME: 'main']
    /** credentials ID -> [secret: ...] (secret text) or [username: ..., password: ...] */
    Map<String, Map> credentials = [:]
    /** first match wins: [pattern: regex on the expanded command, exit: int, stdout: String, writes: [path: text or map]] */
    List<Map> shRules = []
    /** how the input step is answered; user must match the input's submitter (by name or group) */
    Map inputAnswer = [approve: true, user: 'alice']
    Map<String, List<String>> userGroups = [alice: ['ml-approvers']]
    /** milestone ordinals a newer build already passed (this build gets aborted there) */
    Set<Integer> newerBuildPassed = [] as Set
    String previousResult = 'SUCCESS'
    /** why the build started: class names as currentBuild.getBuildCauses(className) matches them */
    List<String> causes = ['jenkins.branch.BranchEventCause']

    // ---- what happened ----
    final List<Map> calls = []
    final List<Map> stages = []
    final List<String> errors = []
    String result = 'SUCCESS'
    /** the last pipeline model (Declarative.Pipeline) */
    def model
    final Map<String, String> libraries = [:]

    // ---- context while running ----
    private final Map<String, Script> vars = [:]
    private boolean libraryLoaded = false
    private final PipelineBinding binding = new PipelineBinding(this)
    final StepsDelegate stepsDelegate = new StepsDelegate(this)
    private final PipelineEnv env = new PipelineEnv(harness: this)
    private final List<Map<String, String>> envStack = []
    private final List<String> stagePath = []
    private String postCondition = null
    private String node = null
    private Map<String, String> workspace = null
    private final List<String> locks = []
    private final List<String> bound = []
    private String branch = null
    private final List<Integer> milestones = []
    private final Map<String, Map<String, String>> stashed = [:]
    private final Set<String> stepNames

    PipelineHarness(File libraryDir) {
        this.libraryDir = libraryDir
        stepNames = metaClass.methods*.name.findAll { it.startsWith('step_') }.collect { it.substring(5) } as Set
    }

    // ---- loading and running scripts ----

    /** Makes the library's vars/ callable, as @Library does; a fixture may replace one step. */
    void useLibrary(String version = 'test', Map<String, File> overrides = [:]) {
        libraries[LIBRARY] = version
        File varsDir = new File(libraryDir, 'vars')
        List<File> files = (varsDir.listFiles() ?: []).findAll { it.name.endsWith('.groovy') }
        for (File f in files) {
            String name = f.name - '.groovy'
            vars[name] = script(f, name)
        }
        overrides.each { String name, File f -> vars[name] = script(f, name) }
        libraryLoaded = true
    }

    /** Runs a Jenkinsfile; its @Library('name@version') lines decide which libraries it can use. */
    void runJenkinsfile(String text) {
        def refs = (text =~ /@Library\(\s*['"]([^'"]+)['"]\s*\)/)
        for (ref in refs) {
            String[] parts = ref[1].split('@', 2)
            if (parts[0] != LIBRARY) { throw new HarnessError("unknown library '${parts[0]}'") }
            useLibrary(parts.length > 1 ? parts[1] : 'default')
        }
        Script s = compile(text, 'Jenkinsfile')
        guarded { s.run() }
    }

    /** Calls one library step directly, as a Jenkinsfile would. */
    Object runStep(String name, Object... args) {
        if (!libraryLoaded) { useLibrary() }
        Object out = null
        guarded { out = invoke(name, args) }
        return out
    }

    /** Failures outside any stage (e.g. a refused setting before `pipeline`) end the build the same way. */
    private void guarded(Closure body) {
        try {
            body()
        } catch (Throwable e) {
            fail(e)
        }
    }

    private Script script(File f, String name) {
        compile(f.text, name)
    }

    private Script compile(String text, String name) {
        String key = name + '\u0000' + text
        Class cls
        synchronized (COMPILED) {
            cls = COMPILED[key]
            if (cls == null) {
                CompilerConfiguration cc = new CompilerConfiguration()
                ImportCustomizer imports = new ImportCustomizer()
                imports.addImport('Library', 'Library')
                imports.addImport('NonCPS', 'NonCPS')
                cc.addCompilationCustomizers(imports)
                GroovyShell shell = new GroovyShell(PipelineHarness.classLoader, new Binding(), cc)
                cls = shell.parse(text, name + '.groovy').getClass()
                COMPILED[key] = cls
            }
        }
        return InvokerHelper.createScript(cls, binding)
    }

    // ---- name resolution (used by PipelineBinding and StepsDelegate) ----

    boolean isCallable(String name) {
        stepNames.contains(name) || (libraryLoaded && vars.containsKey(name))
    }

    Closure callable(String name) {
        return { Object[] args -> invoke(name, args) }
    }

    /** Globals a pipeline script sees besides steps: env, then environment variables by name. */
    Object global(String name) {
        if (name == 'env') { return env }
        if (name == 'currentBuild') { return new PipelineCurrentBuild(harness: this) }
        if (isCallable(name)) { return callable(name) }
        Map e = currentEnv()
        if (e.containsKey(name)) { return e[name] }
        throw new MissingPropertyException(name, PipelineHarness)
    }

    Object invoke(String name, Object[] args) {
        try {
            if (libraryLoaded && vars.containsKey(name)) {
                record(name, [library: true])
                return vars[name].invokeMethod('call', args)
            }
            if (!stepNames.contains(name)) {
                throw new HarnessError("no step '${name}' (not a Jenkins step the harness knows, nor a library step)")
            }
            return this."step_${name}"(*args)
        } catch (MissingMethodException e) {
            // Would otherwise make Groovy retry the call on an outer closure owner.
            throw new HarnessError("${name}: ${e.message}", e)
        } catch (MissingPropertyException e) {
            throw new HarnessError("${name}: ${e.message}", e)
        }
    }

    /** Runs a closure from a declarative block so that step names resolve to steps first. */
    Object runBlock(Closure block) {
        block.delegate = stepsDelegate
        block.resolveStrategy = Closure.DELEGATE_FIRST
        return block.call()
    }

    // ---- recording ----

    Map record(String step, Map details = [:]) {
        Map call = [step: step, stage: stagePath.join(' / '), post: postCondition, node: node, locks: new ArrayList(locks),
                    credentials: new ArrayList(bound), branch: branch, milestones: new ArrayList(milestones)] + details
        calls.add(call)
        return call
    }

    Map<String, String> currentEnv() {
        Map<String, String> merged = new LinkedHashMap(globalEnv)
        for (Map<String, String> layer in envStack) { merged.putAll(layer) }
        return merged
    }

    Object withEnvLayer(Map<String, String> layer, Closure body) {
        envStack.add(layer)
        try {
            return body()
        } finally {
            envStack.remove(envStack.size() - 1)
        }
    }

    /** Every secret value the configured credentials hold: none may show up in a recorded text. */
    List<String> secretValues() {
        credentials.values().collect { it.secret ?: it.password }.findAll { it }
    }

    // ---- build result ----

    void fail(Throwable e) {
        String r = e instanceof Abort ? ((Abort) e).result : 'FAILURE'
        if (RESULTS.indexOf(r) > RESULTS.indexOf(result)) { result = r }
        if (e instanceof Failure || e instanceof Abort) {
            errors.add(e.message)
        } else {
            StringWriter trace = new StringWriter()
            e.printStackTrace(new PrintWriter(trace))
            errors.add("harness: ${e}\n${trace.toString().readLines().findAll { it =~ /\.groovy:\d+\)/ }.take(8).join('\n')}")
        }
    }

    boolean stopped() { RESULTS.indexOf(result) >= RESULTS.indexOf('FAILURE') }

    // ---- context used by Declarative ----

    void enterStage(String name) { stagePath.add(name) }

    void leaveStage() { stagePath.remove(stagePath.size() - 1) }

    void stageStatus(String status) {
        stages.add([path: stagePath.join(' / '), name: stagePath[-1], status: status])
    }

    Object inPost(String condition, Closure body) {
        String saved = postCondition
        postCondition = condition
        try {
            return body()
        } finally {
            postCondition = saved
        }
    }

    /** agent none | any | label: an executor with a fresh, empty workspace (the checkout is recorded, not modelled). */
    Object withAgent(agent, boolean checkout, Closure body) {
        if (agent == null) { return body() }
        String savedNode = node
        Map<String, String> savedWorkspace = workspace
        node = agent.kind == 'none' ? null : (agent.label ?: 'any')
        workspace = agent.kind == 'none' ? null : new LinkedHashMap<String, String>()
        try {
            if (node != null) {
                record('agent', [label: node])
                if (checkout) { record('checkout', [implicit: true]) }
            }
            return body()
        } finally {
            node = savedNode
            workspace = savedWorkspace
        }
    }

    /** Asks the declarative stage-level input; returns the environment it adds to the stage. */
    Map<String, String> askInput(Map spec) {
        Object answer = step_input(spec)
        return spec.submitterParameter ? [(spec.submitterParameter.toString()): answer.toString()] : [:]
    }

    // ---- steps ----

    private void requireWorkspace(String step) {
        if (workspace == null) {
            throw new Failure("${step}: Required context class hudson.FilePath is missing; run it inside an agent (node)")
        }
    }

    private static Map named(Object arg, String positional) {
        arg instanceof Map ? (Map) arg : [(positional): arg]
    }

    Object step_sh(Object arg) {
        requireWorkspace('sh')
        Map a = named(arg, 'script')
        String script = a.script.toString()
        Map<String, String> env = currentEnv()
        List<List<String>> commands = Shell.commands(script, env)
        Map call = record('sh', [script: script, commands: commands.collect { it.join(' ') }, returnStdout: a.returnStdout == true,
                      returnStatus: a.returnStatus == true, env: env])
        int exit = 0
        StringBuilder out = new StringBuilder()
        for (List<String> words in commands) {
            String command = words.join(' ')
            Map rule = shRules.find { command ==~ it.pattern } ?: [:]
            (rule.writes ?: [:]).each { String path, Object content ->
                workspace[path] = content instanceof String ? content : JsonOutput.toJson(content)
            }
            if (rule.run) {  // a real command: its exit status and output, kept as the log's text
                Map real = (Map) ((Closure) rule.run).call(words, env)
                call.output = (call.output ?: '') + real.output
                out.append(real.output)
                exit = real.exit as int
            } else {
                out.append(rule.stdout ?: '')
                exit = (rule.exit ?: 0) as int
            }
            if (exit != 0) { break }
        }
        if (a.returnStatus) { return exit }
        if (exit != 0) { throw new Failure("script returned exit code ${exit}: ${script}") }
        return a.returnStdout ? out.toString() : null
    }

    void step_echo(Object message) { record('echo', [message: message.toString()]) }

    void step_error(Object message) {
        record('error', [message: message.toString()])
        throw new Failure(message.toString())
    }

    Object step_script(Closure body) { body() }

    Object step_withEnv(List assignments, Closure body) {
        Map<String, String> layer = [:]
        for (Object item in assignments) {
            String[] kv = item.toString().split('=', 2)
            if (kv.length != 2) { throw new HarnessError("withEnv: '${item}' is not NAME=value") }
            layer[kv[0]] = kv[1]
        }
        record('withEnv', [names: layer.keySet() as List])
        return withEnvLayer(layer, body)
    }

    Map step_string(Map a) { [binding: 'string', credentialsId: a.credentialsId, variable: a.variable] }

    Map step_usernamePassword(Map a) {
        [binding: 'usernamePassword', credentialsId: a.credentialsId, usernameVariable: a.usernameVariable, passwordVariable: a.passwordVariable]
    }

    Object step_withCredentials(List bindings, Closure body) {
        Map<String, String> layer = [:]
        for (Map b in bindings) {
            Map stored = credentials[b.credentialsId]
            if (stored == null) { throw new Failure("Could not find credentials entry with ID '${b.credentialsId}'") }
            if (b.binding == 'string') {
                if (stored.secret == null) { throw new Failure("Credentials '${b.credentialsId}' is not a secret text") }
                layer[b.variable] = stored.secret
            } else {
                if (stored.password == null) { throw new Failure("Credentials '${b.credentialsId}' is not a username with password") }
                layer[b.usernameVariable] = stored.username
                layer[b.passwordVariable] = stored.password
            }
        }
        record('withCredentials', [ids: bindings*.credentialsId, variables: layer.keySet() as List])
        bound.addAll(layer.keySet())
        try {
            return withEnvLayer(layer, body)
        } finally {
            layer.keySet().each { bound.remove(bound.lastIndexOf(it)) }
        }
    }

    void step_parallel(Map branches) {
        Map<String, Closure> work = branches.findAll { it.key != 'failFast' }
        record('parallel', [branches: work.keySet() as List, failFast: branches.failFast == true])
        Throwable first = null
        for (Map.Entry<String, Closure> e in work.entrySet()) {
            if (first != null && branches.failFast) { break }
            String saved = branch
            branch = e.key
            try {
                e.value.call()
            } catch (Failure | Abort | HarnessError failure) {
                first = first ?: failure
            } finally {
                branch = saved
            }
        }
        if (first != null) { throw first }
    }

    Object step_lock(Object arg, Closure body) {
        String resource = named(arg, 'resource').resource.toString()
        record('lock', [resource: resource])
        locks.add(resource)
        try {
            return body()
        } finally {
            locks.remove(locks.size() - 1)
        }
    }

    void step_milestone(Object arg = [:]) {
        Map a = named(arg, 'ordinal')
        int ordinal = (a.ordinal ?: (milestones ? milestones[-1] + 1 : 1)) as int
        record('milestone', [ordinal: ordinal, label: a.label])
        if (milestones && ordinal <= milestones[-1]) {
            throw new Failure("milestone: invalid ordinal ${ordinal}, must be greater than ${milestones[-1]}")
        }
        if (newerBuildPassed.contains(ordinal)) {
            throw new Abort('NOT_BUILT', "Superseded by a newer build at milestone ${ordinal}")
        }
        milestones.add(ordinal)
    }

    /** The input step (and the declarative input directive): returns the submitter when asked for it. */
    Object step_input(Object arg) {
        Map a = named(arg, 'message')
        record('input', [message: a.message?.toString(), ok: a.ok?.toString(), submitter: a.submitter?.toString(),
                         submitterParameter: a.submitterParameter?.toString()])
        String user = inputAnswer.user
        if (!inputAnswer.approve) { throw new Abort('ABORTED', "Rejected by ${user}") }
        if (a.submitter) {
            List<String> allowed = a.submitter.toString().split(',')*.trim()
            if (!allowed.contains(user) && !(userGroups[user] ?: []).any { allowed.contains(it) }) {
                throw new HarnessError("input: ${user} may not approve; submitter is '${a.submitter}'")
            }
        }
        return a.submitterParameter ? user : null
    }

    Object step_timeout(Map a, Closure body) {
        record('timeout', [time: a.time, unit: a.unit])
        return body()
    }

    Object step_readJSON(Map a) {
        if (a.text != null) { return new JsonSlurperClassic().parseText(a.text.toString()) }
        return new JsonSlurperClassic().parseText(step_readFile(a.file))
    }

    String step_readFile(Object arg) {
        requireWorkspace('readFile')
        String path = named(arg, 'file').file.toString()
        record('readFile', [file: path])
        if (!workspace.containsKey(path)) { throw new Failure("readFile: ${path} does not exist in the workspace") }
        return workspace[path]
    }

    void step_stash(Map a) {
        requireWorkspace('stash')
        Pattern p = glob(a.includes?.toString() ?: '**')
        Map<String, String> files = workspace.findAll { it.key ==~ p }
        record('stash', [name: a.name, files: files.keySet() as List])
        if (files.isEmpty() && !a.allowEmpty) { throw new Failure("stash: no files included in '${a.name}'") }
        stashed[a.name.toString()] = files
    }

    void step_unstash(Object arg) {
        requireWorkspace('unstash')
        String name = named(arg, 'name').name.toString()
        record('unstash', [name: name])
        if (!stashed.containsKey(name)) { throw new Failure("unstash: no such saved stash '${name}'") }
        workspace.putAll(stashed[name])
    }

    void step_archiveArtifacts(Object arg) {
        requireWorkspace('archiveArtifacts')
        Map a = named(arg, 'artifacts')
        Pattern p = glob(a.artifacts.toString())
        List files = workspace.keySet().findAll { it ==~ p } as List
        record('archiveArtifacts', [artifacts: a.artifacts, files: files])
        if (files.isEmpty() && !a.allowEmptyArchive) { throw new Failure("archiveArtifacts: no artifacts found that match '${a.artifacts}'") }
    }

    boolean step_fileExists(Object arg) {
        requireWorkspace('fileExists')
        String path = named(arg, 'file').file.toString()
        record('fileExists', [file: path])
        return workspace.containsKey(path)
    }

    /** The build step: records the job it starts; only wait: false is modelled. */
    void step_build(Map a) {
        record('build', [job: a.job?.toString(), wait: a.wait])
        if (a.wait != false) { throw new HarnessError('build: only wait: false is modelled') }
    }

    void step_junit(Object arg) {
        requireWorkspace('junit')
        Map a = named(arg, 'testResults')
        record('junit', [testResults: a.testResults, allowEmptyResults: a.allowEmptyResults == true])
    }

    /** The declarative entry point: builds the model, then runs it with declarative semantics. */
    void step_pipeline(Closure body) {
        if (model != null) { throw new HarnessError('pipeline: only one pipeline block per build') }
        model = Declarative.build(body)
        Declarative.run(this, model)
    }

    /** Ant-style glob(s), comma-separated, as stash and archiveArtifacts take them. */
    static Pattern glob(String globs) {
        List<String> parts = globs.split(',')*.trim().collect { String g ->
            StringBuilder re = new StringBuilder()
            for (int i = 0; i < g.length(); i++) {
                char c = g.charAt(i)
                if (g.startsWith('**', i)) { re.append('.*'); i++ }
                else if (c == ('*' as char)) { re.append('[^/]*') }
                else if (c == ('?' as char)) { re.append('[^/]') }
                else { re.append(Pattern.quote(c.toString())) }
            }
            re.toString()
        }
        return Pattern.compile(parts.join('|'))
    }
}

/** `currentBuild` as pipeline scripts see it: the causes of this build. */
class PipelineCurrentBuild {
    PipelineHarness harness
    List<Map> getBuildCauses(String className = null) {
        harness.causes.findAll { className == null || it == className }.collect { [_class: it] }
    }
}

/** `env` as pipeline scripts see it. */
class PipelineEnv {
    PipelineHarness harness
    def propertyMissing(String name) { harness.currentEnv()[name] }
    def propertyMissing(String name, Object value) {
        harness.globalEnv[name] = value == null ? null : value.toString()
        harness.record('env', [name: name])
    }
    def getAt(String name) { propertyMissing(name) }
}

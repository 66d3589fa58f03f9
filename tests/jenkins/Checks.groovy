/**
 * The properties the Jenkins front end must have, as functions that return the problems they
 * find (empty: none). Tests assert them on the real library and, to prove they can fail, on
 * deliberately broken fixtures.
 */
class Checks {
    /** Variables that carry secrets; they may only be set by withCredentials. */
    static final List<String> SECRET_VARIABLES = ['SAIL_SIGNING_KEY', 'SAIL_VERIFY_KEY', 'SAIL_AUDIT_KEY', 'GITHUB_TOKEN', 'SAIL_REGISTRY_PASSWORD', 'AWS_SECRET_ACCESS_KEY',
                                                  'AWS_SESSION_TOKEN', 'MLFLOW_TRACKING_PASSWORD', 'MLFLOW_TRACKING_TOKEN']

    /** Every vars/<step>.groovy has a non-empty vars/<step>.txt beside it, and every .txt a step. */
    static List<String> undocumented(File varsDir) {
        List<File> files = (varsDir.listFiles() ?: []) as List
        Set<String> steps = files.findAll { it.name.endsWith('.groovy') }.collect { it.name - '.groovy' } as Set
        Set<String> docs = files.findAll { it.name.endsWith('.txt') }.collect { it.name - '.txt' } as Set
        List<String> problems = []
        if (steps.isEmpty()) { problems.add("no steps in ${varsDir}".toString()) }
        (steps - docs).sort().each { problems.add("vars/${it}.groovy has no vars/${it}.txt".toString()) }
        (docs - steps).sort().each { problems.add("vars/${it}.txt documents no step".toString()) }
        files.findAll { it.name.endsWith('.txt') && !it.text.trim() }.each { problems.add("vars/${it.name} is empty".toString()) }
        return problems
    }

    /** Recorded texts (sh scripts, the commands the shell ran, echo and error messages) that contain a secret. */
    static List<String> leaks(PipelineHarness h) {
        List<String> problems = []
        List<String> secrets = h.secretValues()
        for (Map call in h.calls) {
            List<String> texts = ([call.script, call.message] + (call.commands ?: [])).findAll { it != null }*.toString()
            List<String> showing = texts.findAll { String t -> secrets.any { t.contains(it) } }
            if (showing) {
                String masked = secrets.inject(showing.join(' | ')) { String acc, String s -> acc.replace(s, '****') }
                problems.add("${call.step} in stage '${call.stage}' shows a secret: ${masked}".toString())
            }
            if (call.step == 'sh') {
                // A secret in the environment of a command must have been bound by withCredentials there.
                call.env.each { String name, String value ->
                    if (value && secrets.contains(value) && !call.credentials.contains(name)) {
                        problems.add("sh '${call.script}' sees secret ${name} without withCredentials".toString())
                    }
                }
            }
        }
        return problems
    }

    /** Double-quoted (Groovy-interpolated) strings in the step sources that reference a secret variable. */
    static List<String> interpolatedSecrets(File varsDir) {
        List<String> problems = []
        String names = SECRET_VARIABLES.join('|')
        for (File f in ((varsDir.listFiles() ?: []) as List).findAll { it.name.endsWith('.groovy') }.sort { it.name }) {
            def strings = (f.text =~ /(?s)"""(?:.*?)"""|'''(?:.*?)'''|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"/)
            for (String literal in strings.collect { it.toString() }) {
                if (literal.startsWith('"') && literal =~ /\$\{?\s*(?:env\.)?(?:${names})\b/) {
                    problems.add("${f.name}: ${literal} interpolates a secret in Groovy".toString())
                }
            }
        }
        return problems
    }

    /** The `sail` commands a build ran, as the shell ran them; queries (returnStdout) are not steps. */
    static List<String> sailCommands(PipelineHarness h) {
        h.calls.findAll { it.step == 'sh' && !it.returnStdout }.collectMany { it.commands }.findAll { it == 'sail' || it.startsWith('sail ') }
    }

    /** One event of ci_parity.yaml, expanded: a {candidate} line once per candidate, other placeholders filled. */
    static List<String> expected(List<String> template, List<String> candidates, Map<String, String> values) {
        List<String> lines = template.collectMany { String line ->
            line.contains('{candidate}') ? candidates.collect { line.replace('{candidate}', it) } : [line]
        }
        lines = lines.collect { String line ->
            values.inject(line) { String acc, Map.Entry<String, String> e -> acc.replace("{${e.key}}".toString(), e.value) }
        }
        List<String> open = lines.findAll { it =~ /\{\w+\}/ }
        if (open) { throw new AssertionError("no value for the placeholders in ${open}") }
        return lines
    }

    static List<String> parity(List<String> ran, List<String> expected) {
        if (ran == expected) { return [] }
        int i = 0
        while (i < ran.size() && i < expected.size() && ran[i] == expected[i]) { i++ }
        String want = i < expected.size() ? expected[i] : '(nothing more)'
        String got = i < ran.size() ? ran[i] : '(nothing more)'
        return ["command ${i + 1} differs from ci_parity.yaml: expected '${want}', ran '${got}'\n  expected: ${expected}\n  ran:      ${ran}".toString()]
    }

    /**
     * Promotion: one input naming the approvers and recording who approved, waiting with no
     * executor, no lock and no credentials held (top-level agent none); after it a milestone,
     * then `sail promote` and the production deploy inside the production lock.
     */
    static List<String> promotion(PipelineHarness h, String approvers, String lock) {
        List<Map> inputs = h.calls.findAll { it.step == 'input' }
        if (inputs.size() != 1) { return ["expected one input, got ${inputs.size()}".toString()] }
        Map input = inputs[0]
        List<String> problems = []
        if (input.submitter != approvers) { problems.add("input submitter is '${input.submitter}', expected '${approvers}'".toString()) }
        if (!input.submitterParameter) { problems.add('input does not record who approved (submitterParameter)') }
        if (input.node != null) { problems.add("input waits holding an executor (agent '${input.node}')".toString()) }
        if (input.locks) { problems.add("input waits holding lock(s) ${input.locks}".toString()) }
        if (input.credentials) { problems.add("input waits with credentials bound: ${input.credentials}".toString()) }
        if (h.model?.agent?.kind != 'none') { problems.add("top-level agent is '${h.model?.agent}', not none".toString()) }
        List<Map> after = h.calls.drop(h.calls.indexOf(input) + 1)
        Map milestone = after.find { it.step == 'milestone' }
        if (milestone == null) { problems.add('no milestone after the input') }
        for (String command in ['sail promote', 'sail deploy --environment production']) {
            Map call = after.find { it.step == 'sh' && it.commands.any { String c -> c.startsWith(command) } }
            if (call == null) {
                problems.add("'${command}' did not run after the input".toString())
                continue
            }
            if (milestone != null && !call.milestones.contains(milestone.ordinal)) {
                problems.add("'${command}' ran before the milestone after the input".toString())
            }
            if (!call.locks.contains(lock)) { problems.add("'${command}' ran outside lock '${lock}' (held: ${call.locks})".toString()) }
        }
        return problems
    }
}

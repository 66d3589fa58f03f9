/**
 * The declarative pipeline DSL: builders turn `pipeline { ... }` into a model (as Jenkins parses
 * it first), and run() executes the model with Jenkins' semantics: the order inside a stage
 * (when beforeOptions, options, when beforeInput, input, when beforeAgent, agent, when, steps,
 * post), stages after a failure skipped, post conditions chosen by the result.
 * Only what the pipelines here use is modelled; anything else is refused by name.
 */
class Declarative {
    static class Agent {
        String kind   // none | any | label
        String label
        String toString() { kind == 'label' ? "label '${label}'" : kind }
    }

    static class Condition {
        String kind
        Object arg
        Closure expression
        List<Condition> children = []
    }

    static class When {
        List<Condition> conditions = []
        boolean beforeAgent, beforeInput, beforeOptions

        String moment() { beforeOptions ? 'options' : beforeInput ? 'input' : beforeAgent ? 'agent' : 'steps' }
    }

    static class Stage {
        String name
        Agent agent
        List<Map> options = []
        When when
        Map input
        Closure inputBody  // evaluated again when the stage runs: its message may name env set before
        Map<String, String> environment = [:]
        Closure steps
        List<Stage> stages
        Map<String, Closure> post = [:]
    }

    static class Pipeline {
        Agent agent
        List<Map> options = []
        List<Map> triggers = []
        Map<String, String> environment = [:]
        List<Stage> stages = []
        Map<String, Closure> post = [:]
    }

    static final List<String> POST_ORDER = ['always', 'changed', 'fixed', 'regression', 'aborted', 'failure', 'success',
                                            'unstable', 'unsuccessful', 'notBuilt', 'cleanup']
    static final Set<String> OPTIONS = ['buildDiscarder', 'timeout', 'lock', 'retry', 'skipDefaultCheckout', 'disableConcurrentBuilds',
                                        'timestamps', 'durabilityHint', 'preserveStashes', 'quietPeriod', 'disableResume',
                                        'skipStagesAfterUnstable', 'parallelsAlwaysFailFast', 'checkoutToSubdirectory'] as Set
    static final Set<String> OPTION_VALUES = ['logRotator'] as Set
    static final Set<String> TRIGGERS = ['cron', 'pollSCM', 'upstream'] as Set

    // ---- builders ----

    static Object applyTo(Object delegate, Closure body) {
        Closure c = (Closure) body.clone()
        c.delegate = delegate
        c.resolveStrategy = Closure.DELEGATE_FIRST
        c.call()
        return delegate
    }

    static Pipeline build(Closure body) {
        Pipeline p = ((PipelineBuilder) Declarative.applyTo(new PipelineBuilder(), body)).model
        validate(p)
        return p
    }

    static class AgentBuilder {
        Agent agent = new Agent(kind: 'any')
        void label(Object l) { agent = new Agent(kind: 'label', label: l.toString()) }
    }

    static class CommonBuilder {
        Agent getNone() { new Agent(kind: 'none') }
        Agent getAny() { new Agent(kind: 'any') }
        protected Agent agentOf(Object spec) {
            if (spec instanceof Agent) { return (Agent) spec }
            if (spec instanceof Closure) { return ((AgentBuilder) Declarative.applyTo(new AgentBuilder(), (Closure) spec)).agent }
            throw new PipelineHarness.HarnessError("agent: unsupported agent ${spec}")
        }
        protected static List<Map> optionsOf(Closure c) { ((DeclarativeOptions) Declarative.applyTo(new DeclarativeOptions(), c)).options }
        protected static Map<String, String> environmentOf(Closure c) { ((DeclarativeEnvironment) Declarative.applyTo(new DeclarativeEnvironment(), c)).values }
        protected static List<Stage> stagesOf(Closure c) { ((StagesBuilder) Declarative.applyTo(new StagesBuilder(), c)).stages }
        protected static Map<String, Closure> postOf(Closure c) { ((DeclarativePost) Declarative.applyTo(new DeclarativePost(), c)).blocks }
    }

    static class PipelineBuilder extends CommonBuilder {
        Pipeline model = new Pipeline()
        void agent(Object spec) { model.agent = agentOf(spec) }
        void options(Closure c) { model.options = optionsOf(c) }
        void triggers(Closure c) {
            DeclarativeTriggers triggers = new DeclarativeTriggers()
            Declarative.applyTo(triggers, c)
            model.triggers = triggers.triggers
        }
        void environment(Closure c) { model.environment = environmentOf(c) }
        void stages(Closure c) { model.stages = stagesOf(c) }
        void post(Closure c) { model.post = postOf(c) }
    }

    static class StagesBuilder {
        List<Stage> stages = []
        void stage(Object name, Closure body) {
            StageBuilder b = new StageBuilder()
            b.stage.name = name.toString()
            Declarative.applyTo(b, body)
            stages.add(b.stage)
        }
    }

    static class StageBuilder extends CommonBuilder {
        Stage stage = new Stage()
        void agent(Object spec) { stage.agent = agentOf(spec) }
        void options(Closure c) { stage.options = optionsOf(c) }
        void environment(Closure c) { stage.environment = environmentOf(c) }
        void when(Closure c) { stage.when = ((WhenBuilder) Declarative.applyTo(new WhenBuilder(), c)).when }
        void input(Closure c) {
            stage.input = ((InputBuilder) Declarative.applyTo(new InputBuilder(), c)).spec
            stage.inputBody = c
        }
        void steps(Closure c) { stage.steps = c }
        void stages(Closure c) { stage.stages = stagesOf(c) }
        void post(Closure c) { stage.post = postOf(c) }
    }



    static class InputBuilder {
        Map spec = [:]
        void message(Object v) { spec.message = v.toString() }
        void ok(Object v) { spec.ok = v.toString() }
        void submitter(Object v) { spec.submitter = v?.toString() }
        void submitterParameter(Object v) { spec.submitterParameter = v.toString() }
        void id(Object v) { spec.id = v.toString() }
    }


    static class WhenBuilder {
        When when = new When()
        void beforeAgent(boolean b) { when.beforeAgent = b }
        void beforeInput(boolean b) { when.beforeInput = b }
        void beforeOptions(boolean b) { when.beforeOptions = b }
        void branch(Object pattern) { add(new Condition(kind: 'branch', arg: pattern.toString())) }
        void changeRequest() { add(new Condition(kind: 'changeRequest')) }
        void expression(Closure c) { add(new Condition(kind: 'expression', expression: c)) }
        void not(Closure c) { add(nested('not', c, 1)) }
        void allOf(Closure c) { add(nested('allOf', c, 0)) }
        void anyOf(Closure c) { add(nested('anyOf', c, 0)) }
        private void add(Condition c) { when.conditions.add(c) }
        private static Condition nested(String kind, Closure c, int exactly) {
            List<Condition> children = ((WhenBuilder) Declarative.applyTo(new WhenBuilder(), c)).when.conditions
            if (exactly && children.size() != exactly) { throw new PipelineHarness.HarnessError("when: ${kind} takes exactly ${exactly} condition") }
            return new Condition(kind: kind, children: children)
        }
    }

    /** Checks Jenkins makes before running anything. */
    static void validate(Pipeline p) {
        if (p.agent == null) { throw new PipelineHarness.HarnessError("pipeline: missing required section 'agent'") }
        if (!p.stages) { throw new PipelineHarness.HarnessError("pipeline: missing required section 'stages'") }
        Set<String> names = [] as Set
        Closure check
        check = { List<Stage> stages ->
            for (Stage s in stages) {
                if (!names.add(s.name)) { throw new PipelineHarness.HarnessError("Duplicate stage name: '${s.name}'") }
                if ((s.steps == null) == (s.stages == null)) {
                    throw new PipelineHarness.HarnessError("stage '${s.name}': exactly one of 'steps' or 'stages' is required")
                }
                if (s.input != null && !s.input.message) { throw new PipelineHarness.HarnessError("stage '${s.name}': input needs a message") }
                if (s.stages != null) { check(s.stages) }
            }
        }
        check(p.stages)
    }

    // ---- running ----

    static void run(PipelineHarness h, Pipeline p) {
        h.withAgent(p.agent, !skipsCheckout(p.options)) {
            h.withEnvLayer(p.environment) {
                withOptions(h, p.options) {
                    for (Stage s in p.stages) { runStage(h, s, skipsCheckout(p.options)) }
                }
                runPost(h, p.post, h.result)
            }
        }
    }

    private static boolean skipsCheckout(List<Map> options) { options.any { it.name == 'skipDefaultCheckout' } }

    private static void withOptions(PipelineHarness h, List<Map> options, Closure body) {
        if (options.isEmpty()) {
            body()
            return
        }
        Map option = options[0]
        Closure rest = { withOptions(h, options.tail(), body) }
        switch (option.name) {
            case 'lock':
                h.step_lock(option.args[0], rest)
                break
            case 'timeout':
                h.step_timeout((Map) option.args[0], rest)
                break
            default:
                h.record('option', [name: option.name])
                rest()
        }
    }

    static void runStage(PipelineHarness h, Stage s, boolean noCheckout) {
        h.enterStage(s.name)
        try {
            if (h.stopped()) {
                h.stageStatus('skipped: earlier failure')
                return
            }
            if (skippedAt(h, s, 'options')) { return }
            withOptions(h, s.options) {
                if (skippedAt(h, s, 'input')) { return }
                Map<String, String> submitted = s.input ? h.askInput(((InputBuilder) Declarative.applyTo(new InputBuilder(), s.inputBody)).spec) : [:]
                h.withEnvLayer(submitted) {
                    if (skippedAt(h, s, 'agent')) { return }
                    h.withAgent(s.agent, !noCheckout && !skipsCheckout(s.options)) {
                        h.withEnvLayer(s.environment) {
                            if (skippedAt(h, s, 'steps')) { return }
                            h.stageStatus('ran')
                            String before = h.result
                            try {
                                if (s.steps != null) {
                                    h.runBlock(s.steps)
                                } else {
                                    for (Stage child in s.stages) { runStage(h, child, noCheckout) }
                                }
                            } catch (Throwable e) {
                                h.fail(e)
                            }
                            String result = h.result == before ? 'SUCCESS' : h.result
                            runPost(h, s.post, result)
                        }
                    }
                }
            }
        } catch (Throwable e) {
            h.fail(e)  // input rejected, an option failed
        } finally {
            h.leaveStage()
        }
    }

    private static boolean skippedAt(PipelineHarness h, Stage s, String moment) {
        if (s.when == null || s.when.moment() != moment) { return false }
        if (s.when.conditions.every { test(h, it) }) { return false }
        h.stageStatus('skipped: when')
        return true
    }

    static boolean test(PipelineHarness h, Condition c) {
        Map<String, String> env = h.currentEnv()
        switch (c.kind) {
            case 'branch': return env.BRANCH_NAME != null && env.BRANCH_NAME ==~ PipelineHarness.glob(c.arg.toString())
            case 'changeRequest': return env.CHANGE_ID != null
            case 'expression': return h.runBlock(c.expression) as boolean
            case 'not': return !test(h, c.children[0])
            case 'allOf': return c.children.every { test(h, it) }
            case 'anyOf': return c.children.any { test(h, it) }
        }
        throw new PipelineHarness.HarnessError("when: unknown condition ${c.kind}")
    }

    static void runPost(PipelineHarness h, Map<String, Closure> post, String result) {
        for (String condition in POST_ORDER) {
            Closure block = post[condition]
            if (block == null || !applies(condition, result, h.previousResult)) { continue }
            h.inPost(condition) {
                try {
                    h.runBlock(block)
                } catch (Throwable e) {
                    h.fail(e)
                }
            }
        }
    }

    private static boolean applies(String condition, String result, String previous) {
        switch (condition) {
            case 'always': case 'cleanup': return true
            case 'changed': return result != previous
            case 'fixed': return result == 'SUCCESS' && previous in ['FAILURE', 'UNSTABLE']
            case 'regression': return previous == 'SUCCESS' && result in ['FAILURE', 'UNSTABLE', 'ABORTED']
            case 'aborted': return result == 'ABORTED'
            case 'failure': return result == 'FAILURE'
            case 'success': return result == 'SUCCESS'
            case 'unstable': return result == 'UNSTABLE'
            case 'unsuccessful': return result != 'SUCCESS'
            case 'notBuilt': return result == 'NOT_BUILT'
        }
        return false
    }
}

/** Collects the options { } of a pipeline or stage. */
class DeclarativeOptions {
    List<Map> options = []
    def methodMissing(String name, Object args) {
        Object[] a = args as Object[]
        if (Declarative.OPTIONS.contains(name)) {
            Map option = [name: name, args: a.toList()]
            options.add(option)
            return option
        }
        if (Declarative.OPTION_VALUES.contains(name)) { return [name: name, args: a.toList()] }
        throw new MissingMethodException(name, DeclarativeOptions, a)
    }
}

/** Collects the triggers { } of a pipeline, for the model; a test fires one by a build cause. */
class DeclarativeTriggers {
    List<Map> triggers = []
    def methodMissing(String name, Object args) {
        Object[] a = args as Object[]
        if (!Declarative.TRIGGERS.contains(name) || a.length != 1) {
            throw new MissingMethodException(name, DeclarativeTriggers, a)
        }
        triggers.add([name: name, spec: a[0]?.toString()])
    }
}

/** Collects the assignments of an environment { } block. */
class DeclarativeEnvironment {
    Map<String, String> values = [:]
    def propertyMissing(String name, Object value) { values[name] = value?.toString() }
    def propertyMissing(String name) { throw new MissingPropertyException(name, DeclarativeEnvironment) }
}

/** Collects the condition blocks of a post { } section. */
class DeclarativePost {
    Map<String, Closure> blocks = [:]
    def methodMissing(String name, Object args) {
        Object[] a = args as Object[]
        if (!Declarative.POST_ORDER.contains(name) || a.length != 1 || !(a[0] instanceof Closure)) {
            throw new MissingMethodException(name, DeclarativePost, a)
        }
        blocks[name] = (Closure) a[0]
    }
}

/**
 * Delegate of the closures in declarative blocks (steps, post, expression) while they run, so a
 * step name inside them means the step, not a declarative builder method of the same name.
 * Names it does not know fall through to the script (its own methods, its binding).
 */
class StepsDelegate {
    private final PipelineHarness pipelineHarness

    StepsDelegate(PipelineHarness h) { pipelineHarness = h }

    def methodMissing(String name, Object args) {
        Object[] a = args as Object[]
        if (pipelineHarness.isCallable(name)) { return pipelineHarness.invoke(name, a) }
        throw new MissingMethodException(name, StepsDelegate, a)
    }

    def propertyMissing(String name) {
        try {
            return pipelineHarness.global(name)
        } catch (MissingPropertyException ignored) {
            throw new MissingPropertyException(name, StepsDelegate)
        }
    }
}

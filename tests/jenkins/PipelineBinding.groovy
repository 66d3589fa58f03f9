/** The binding every loaded script shares: variables the scripts set, then the harness's globals and steps. */
class PipelineBinding extends Binding {
    private final PipelineHarness harness

    PipelineBinding(PipelineHarness harness) { this.harness = harness }

    Object getVariable(String name) {
        if (getVariables().containsKey(name)) { return super.getVariable(name) }
        return harness.global(name)
    }

    boolean hasVariable(String name) {
        if (getVariables().containsKey(name)) { return true }
        try {
            harness.global(name)
            return true
        } catch (MissingPropertyException ignored) {
            return false
        }
    }
}

/**
 * Moves the MLflow alias `champion` to the version this build's gate registered, as a
 * compare-and-set against the champion that gate compared with, and records who approved.
 * Reads reports/gate.json of this build, so it must run where that file is (unstash it first).
 */
def call(Map config = [:]) {
    if (!config.approver) {
        error 'sailPromote: approver is required (the user who approved the promotion)'
    }
    def gate = readJSON(file: 'reports/gate.json')
    def version = gate.registered_version
    if (!(version instanceof CharSequence || version instanceof Number) || !version.toString()) {
        error "sailPromote: reports/gate.json has no registered_version (verdict: ${gate.verdict}): this build's gate did not pass"
    }
    // readJSON gives JSONNull, not null, for a JSON null: only a map with a version is a champion.
    def champion = gate.champion
    String expected = (champion instanceof Map && champion.version != null) ? champion.version.toString() : 'none'
    sailSh(config, 'sail promote --version "$SAIL_PROMOTE_VERSION" --expect-champion "$SAIL_EXPECT_CHAMPION" --approver "$SAIL_APPROVER"',
            ['audit', 'verify', 'registry', 'aws', 'mlflow'],
            ["SAIL_PROMOTE_VERSION=${version}".toString(), "SAIL_EXPECT_CHAMPION=${expected}".toString(), "SAIL_APPROVER=${config.approver}".toString()])
}

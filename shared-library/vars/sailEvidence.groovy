/**
 * Says the newest live evidence (a canary or shadow report in reports/live/) for the version this
 * build's gate registered: `sail evidence --version V` writes reports/evidence.json, whose one line
 * this returns and sets as env.SAIL_LIVE_EVIDENCE, for the promotion input's message. It judges
 * nothing: with promotion.require_live_evidence, `sail promote` is what refuses.
 */
def call(Map config = [:]) {
    def gate = readJSON(file: 'reports/gate.json')
    def version = gate.registered_version
    if (!(version instanceof CharSequence || version instanceof Number) || !version.toString()) {
        error "sailEvidence: reports/gate.json has no registered_version (verdict: ${gate.verdict}): this build's gate did not pass"
    }
    sailSh(config, 'sail evidence --version "$SAIL_PROMOTE_VERSION"', ['aws', 'mlflow'],
            ["SAIL_PROMOTE_VERSION=${version}".toString()])
    String line = readJSON(file: 'reports/evidence.json').line.toString()
    env.SAIL_LIVE_EVIDENCE = line
    return line
}

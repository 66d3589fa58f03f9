/**
 * Trains every candidate of params.yaml in its own container, all in parallel: one branch per
 * name that `sail candidates` lists, so adding a candidate to params.yaml adds a branch.
 */
def call(Map config = [:]) {
    String listed = sh(script: 'sail candidates', returnStdout: true).trim()
    def names = readJSON(text: listed)
    if (!(names instanceof List) || names.isEmpty()) {
        error "sailTrain: 'sail candidates' listed no candidates: ${listed}"
    }
    Map branches = [:]
    for (def name in names) {
        String candidate = name.toString()
        // The name reaches the shell as a variable, never spliced into the script text.
        branches["train ${candidate}".toString()] = {
            sailSh(config, 'sail train --container --candidate "$SAIL_CANDIDATE"', ['signing'], ["SAIL_CANDIDATE=${candidate}".toString()])
        }
    }
    branches.failFast = true
    parallel branches
}

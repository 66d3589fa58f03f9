/**
 * Writes the gate report (reports/report.md) and archives reports/ with the build; with post: true
 * (pull requests) also posts it as the pull request's comment. Runs after a failed gate too, so
 * people can see why.
 */
def call(Map config = [:]) {
    if (config.post) {
        sailSh(config, 'sail report --post', ['github'], ["GITHUB_REPOSITORY=${repository(config)}".toString()])
    } else {
        sailSh(config, 'sail report')
    }
    archiveArtifacts(artifacts: 'reports/**', allowEmptyArchive: true)
}

/** owner/name of the pull request's repository: config.githubRepository, else from the CHANGE_URL Jenkins sets. */
private String repository(Map config) {
    String found = config.githubRepository ?: repositoryOf(env.CHANGE_URL ?: '')
    if (!found) {
        error "sailReport: set githubRepository: 'owner/name' (CHANGE_URL '${env.CHANGE_URL ?: ''}' names no GitHub pull request)"
    }
    return found
}

@NonCPS  // a regex Matcher cannot be saved with the pipeline's state
private static String repositoryOf(String changeUrl) {
    def match = changeUrl =~ /^https?:\/\/[^\/]+\/([^\/]+\/[^\/]+)\/pull\/\d+/
    return match ? match[0][1] : null
}

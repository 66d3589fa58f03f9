/**
 * Runs one `sail` command with the project's settings and only the credentials it needs.
 *
 * Every other sail* step goes through here, so there is one place where secrets are bound
 * (withCredentials, shell-expanded: the script is single-quoted and never interpolated by Groovy)
 * and one place where settings become environment variables.
 */
def call(Map config, String script, List credentialKinds = [], List extraEnv = []) {
    List bindings = []
    for (String kind in credentialKinds) {
        def binding = credentialBinding(config, kind)
        if (binding != null) {
            bindings.add(binding)
        }
    }
    withEnv(settingsEnv(config) + extraEnv) {
        if (bindings.isEmpty()) {
            sh script
        } else {
            withCredentials(bindings) {
                sh script
            }
        }
    }
}

/** Credential variables `sail` reads; they may only come from Jenkins credentials, never from config.environment. */
private List secretVariables() {
    return ['SAIL_SIGNING_KEY', 'SAIL_VERIFY_KEY', 'SAIL_AUDIT_KEY', 'GITHUB_TOKEN', 'SAIL_REGISTRY_PASSWORD', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN',
            'MLFLOW_TRACKING_PASSWORD', 'MLFLOW_TRACKING_TOKEN']
}

private List settingsEnv(Map config) {
    List result = []
    Map environment = config.environment ?: [:]
    for (String name in environment.keySet()) {
        if (!(name ==~ /[A-Za-z_][A-Za-z0-9_]*/)) {
            error "sail: config.environment key '${name}' is not an environment variable name"
        }
        if (secretVariables().contains(name)) {
            error "sail: ${name} is a secret: give its Jenkins credentials ID in the pipeline config instead of config.environment"
        }
        result.add("${name}=${environment[name]}".toString())
    }
    return result
}

/** One withCredentials binding per kind of secret; the optional kinds are skipped when not configured. */
private def credentialBinding(Map config, String kind) {
    switch (kind) {
        case 'signing':  // the private bundle key: only the steps that sign (train, gate, publish)
            return string(credentialsId: config.signingKeyCredentials ?: 'sail-signing-key', variable: 'SAIL_SIGNING_KEY')
        case 'verify':  // the public bundle key (HMAC scheme: the shared secret): the steps that only verify
            return string(credentialsId: config.verifyKeyCredentials ?: 'sail-verify-key', variable: 'SAIL_VERIFY_KEY')
        case 'audit':  // the private audit key: promotion alone seals the audit history
            return string(credentialsId: config.auditKeyCredentials ?: 'sail-audit-key', variable: 'SAIL_AUDIT_KEY')
        case 'github':
            return string(credentialsId: config.githubTokenCredentials ?: 'github-token', variable: 'GITHUB_TOKEN')
        case 'registry':
            return config.registryCredentials ? usernamePassword(credentialsId: config.registryCredentials,
                    usernameVariable: 'SAIL_REGISTRY_USERNAME', passwordVariable: 'SAIL_REGISTRY_PASSWORD') : null
        case 'aws':
            return config.awsCredentials ? usernamePassword(credentialsId: config.awsCredentials,
                    usernameVariable: 'AWS_ACCESS_KEY_ID', passwordVariable: 'AWS_SECRET_ACCESS_KEY') : null
        case 'mlflow':
            return config.mlflowCredentials ? usernamePassword(credentialsId: config.mlflowCredentials,
                    usernameVariable: 'MLFLOW_TRACKING_USERNAME', passwordVariable: 'MLFLOW_TRACKING_PASSWORD') : null
        default:
            error "sail: unknown credential kind '${kind}' (signing, verify, audit, github, registry, aws, mlflow)"
    }
}

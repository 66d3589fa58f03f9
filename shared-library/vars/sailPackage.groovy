/** Builds the inference image around the gated bundle and records it in MLflow (`sail package`). */
def call(Map config = [:]) {
    sailSh(config, 'sail package', ['verify', 'registry', 'aws', 'mlflow'])
}

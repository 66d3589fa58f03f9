/** Checks the raw data against the project's contract, then makes the seeded train/test split. */
def call(Map config = [:]) {
    sailSh(config, 'sail validate')
    sailSh(config, 'sail split')
}

/**
 * What /bin/sh would execute for a `sh` script: the commands, split into words, with variables
 * expanded from the step's environment and quotes removed. Enough shell for pipeline steps
 * (quotes, $VAR, ${VAR}, newlines, ';' and '&&'); anything more is refused, not guessed.
 */
class Shell {
    static List<List<String>> commands(String script, Map<String, String> env) {
        List<List<String>> result = []
        List<String> words = []
        StringBuilder word = null
        int i = 0
        while (i < script.length()) {
            char c = script.charAt(i)
            if (c == ('\n' as char) || c == (';' as char) || (c == ('&' as char) && script.startsWith('&&', i))) {
                if (word != null) { words.add(word.toString()); word = null }
                if (!words.isEmpty()) { result.add(words); words = [] }
                i += (c == ('&' as char)) ? 2 : 1
            } else if (c == (' ' as char) || c == ('\t' as char)) {
                if (word != null) { words.add(word.toString()); word = null }
                i++
            } else if (c == ('#' as char) && word == null) {
                while (i < script.length() && script.charAt(i) != ('\n' as char)) { i++ }
            } else if (c == ('\'' as char)) {
                int end = script.indexOf('\'', i + 1)
                if (end < 0) { throw new IllegalArgumentException("unterminated ' in: ${script}") }
                word = (word ?: new StringBuilder()).append(script.substring(i + 1, end))
                i = end + 1
            } else if (c == ('"' as char)) {
                word = word ?: new StringBuilder()
                i++
                while (true) {
                    if (i >= script.length()) { throw new IllegalArgumentException("unterminated \" in: ${script}") }
                    char d = script.charAt(i)
                    if (d == ('"' as char)) { i++; break }
                    if (d == ('\\' as char) && i + 1 < script.length() && '$`"\\\n'.indexOf((int) script.charAt(i + 1)) >= 0) {
                        word.append(script.charAt(i + 1)); i += 2
                    } else if (d == ('$' as char)) {
                        i = expand(script, i, env, word)
                    } else if (d == ('`' as char)) {
                        throw new IllegalArgumentException("command substitution is not modelled: ${script}")
                    } else {
                        word.append(d); i++
                    }
                }
            } else if (c == ('\\' as char) && i + 1 < script.length()) {
                word = (word ?: new StringBuilder()).append(script.charAt(i + 1))
                i += 2
            } else if (c == ('$' as char)) {
                word = word ?: new StringBuilder()
                i = expand(script, i, env, word)
            } else if ('|<>`()'.indexOf((int) c) >= 0) {
                throw new IllegalArgumentException("'${c}' is not modelled by the harness shell: ${script}")
            } else {
                word = (word ?: new StringBuilder()).append(c)
                i++
            }
        }
        if (word != null) { words.add(word.toString()) }
        if (!words.isEmpty()) { result.add(words) }
        return result
    }

    /** Expands $NAME or ${NAME} at position i into word; returns the index after it. */
    private static int expand(String script, int i, Map<String, String> env, StringBuilder word) {
        String rest = script.substring(i)
        def m = (rest =~ /^\$\{([A-Za-z_][A-Za-z0-9_]*)\}|^\$([A-Za-z_][A-Za-z0-9_]*)/)
        if (!m.find()) {
            if (rest.startsWith('$(') || rest.startsWith('${')) {
                throw new IllegalArgumentException("'${rest.take(2)}' is not modelled by the harness shell: ${script}")
            }
            word.append('$')
            return i + 1
        }
        String name = m.group(1) ?: m.group(2)
        word.append(env[name] ?: '')
        return i + m.group(0).length()
    }
}

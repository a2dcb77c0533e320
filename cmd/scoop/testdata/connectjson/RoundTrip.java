import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.Map;

import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.json.JsonConverter;

/**
 * Runs Kafka Connect's JsonConverter (schemas enabled) over records read
 * from scoop's topics. Each input line is "TOPIC KEY VALUE", KEY and VALUE
 * base64 or "-" for null; each output line is "KEY VALUE", each what
 * fromConnectData(toConnectData(...)) gave back (base64, "-" for null) or
 * "!" followed by the base64 of the error for the first that failed.
 */
public class RoundTrip {
    public static void main(String[] args) throws Exception {
        JsonConverter keys = new JsonConverter();
        keys.configure(Map.of("schemas.enable", "true"), true);
        JsonConverter values = new JsonConverter();
        values.configure(Map.of("schemas.enable", "true"), false);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        StringBuilder out = new StringBuilder();
        for (String line; (line = in.readLine()) != null; ) {
            String[] f = line.split(" ", -1);
            out.append(trip(keys, f[0], f[1])).append(' ').append(trip(values, f[0], f[2])).append('\n');
        }
        System.out.print(out);
    }

    private static String trip(JsonConverter c, String topic, String field) {
        try {
            byte[] in = field.equals("-") ? null : Base64.getDecoder().decode(field);
            SchemaAndValue read = c.toConnectData(topic, in);
            byte[] back = c.fromConnectData(topic, read.schema(), read.value());
            return back == null ? "-" : Base64.getEncoder().encodeToString(back);
        }
        catch (RuntimeException e) {
            String msg = e.toString() + (e.getCause() != null ? " caused by " + e.getCause() : "");
            return "!" + Base64.getEncoder().encodeToString(msg.getBytes(StandardCharsets.UTF_8));
        }
    }
}

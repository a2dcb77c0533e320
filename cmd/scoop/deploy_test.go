package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/scoop-cdc/scoop/internal/daemon"
)

// configVariables are the variables Config reads.
func configVariables() map[string]bool {
	vars := map[string]bool{}
	t := reflect.TypeOf(daemon.Config{})
	for i := 0; i < t.NumField(); i++ {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("env"), ","); name != "" && name != "-" {
			vars[name] = true
		}
	}
	return vars
}

var storeVariable = regexp.MustCompile(`^SCOOP_STORE_[A-Z0-9_]+_URL$`)

// unknownVariables lists the SCOOP_* names that Config does not read.
func unknownVariables(names []string) []string {
	known := configVariables()
	var bad []string
	for _, n := range names {
		if strings.HasPrefix(n, "SCOOP_") && !known[n] && !storeVariable.MatchString(n) {
			bad = append(bad, n)
		}
	}
	sort.Strings(bad)
	return bad
}

// The Kubernetes manifests and docker-compose.yml set only variables that
// scoop reads: a typo there would be ignored silently.
func TestDeploymentsSetOnlyKnownVariables(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/scoop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	kinds := map[string]int{}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var doc struct {
			Kind       string            `yaml:"kind"`
			Data       map[string]string `yaml:"data"`
			StringData map[string]string `yaml:"stringData"`
			Spec       struct {
				Replicas int `yaml:"replicas"`
				Template struct {
					Spec struct {
						Containers []struct {
							ReadinessProbe struct {
								HTTPGet struct{ Path string } `yaml:"httpGet"`
							} `yaml:"readinessProbe"`
							LivenessProbe struct {
								HTTPGet struct{ Path string } `yaml:"httpGet"`
							} `yaml:"livenessProbe"`
						} `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("deploy/scoop.yaml: %v", err)
		}
		kinds[doc.Kind]++
		for k := range doc.Data {
			if k != "mappings.yaml" {
				names = append(names, k)
			}
		}
		for k := range doc.StringData {
			names = append(names, k)
		}
		if doc.Kind == "Deployment" {
			c := doc.Spec.Template.Spec.Containers
			if doc.Spec.Replicas < 2 || len(c) != 1 || c[0].ReadinessProbe.HTTPGet.Path != "/readyz" || c[0].LivenessProbe.HTTPGet.Path != "/healthz" {
				t.Fatalf("the Deployment must run 2 replicas with /readyz and /healthz probes: %+v", doc.Spec)
			}
		}
	}
	if kinds["Deployment"] != 1 || kinds["Secret"] != 1 || kinds["ConfigMap"] != 2 {
		t.Fatalf("deploy/scoop.yaml holds %v, want a Deployment, a Secret and two ConfigMaps", kinds)
	}
	compose, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(compose, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for k := range c.Services["scoop"].Environment {
		names = append(names, k)
	}
	if len(names) < 10 {
		t.Fatalf("read only %d variables: %v", len(names), names)
	}
	if bad := unknownVariables(names); len(bad) > 0 {
		t.Fatalf("variables scoop does not read: %v", bad)
	}
	if bad := unknownVariables([]string{"SCOOP_KAFKA_BROKER", "SCOOP_STORE_X_URL"}); len(bad) != 1 || bad[0] != "SCOOP_KAFKA_BROKER" {
		t.Fatalf("the check itself: %v", bad)
	}
}

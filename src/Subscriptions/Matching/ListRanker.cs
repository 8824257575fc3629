using System.Numerics;
using System.Numerics.Tensors;

namespace Subscriptions.Matching;

/// <summary>A paper one topic found: its place in the day's papers (<see cref="ListRanker"/>), how well it fits, and whether only by meaning.</summary>
internal readonly record struct TopicHit(int Paper, double Score, bool ByMeaning);

/// <summary>One subscriber's liked and disliked papers, as vectors, and the ids of the disliked ones.</summary>
internal sealed record FeedbackExamples(List<float[]> Liked, List<float[]> Disliked, HashSet<long> DislikedIds);

/// <summary>
/// Ranks one subscriber's list at a time from their topics' hits: a paper scores the best of its hits (moved by the
/// subscriber's feedback), and the list is the best <c>maxPapers</c>, ties to the lower paper id.
/// Scratch arrays indexed by the paper's place in the day are reused from one subscriber to the next, and a paper's
/// topics are bits until it makes the list: a million subscribers' lists are ranked in one pass, and allocating a
/// dictionary entry and two lists for every candidate paper made that pass (and its garbage collection) the
/// largest part of matching everyone.
/// </summary>
internal sealed class ListRanker : IComparer<int>
{
    // Meaning feedback: a paper's score moves by this much times (its cosine to the closest liked paper minus
    // that to the closest disliked one), so a liked paper's neighbours rise and a disliked one's fall.
    private const double FeedbackWeight = 2;

    private readonly long[] _paperIds;
    private readonly float[]?[]? _vectors;
    private readonly double[] _scores;
    private readonly bool[] _candidate;
    private readonly bool[] _alreadySent;
    private readonly Dictionary<long, int> _placeOf;
    private readonly List<int> _candidates = [];
    private ulong[] _mentions = [];
    private ulong[] _closeTo = [];
    private int _maskWords;

    /// <param name="paperIds">The day's papers, in the order <see cref="TopicHit.Paper"/> refers to.</param>
    /// <param name="vectors">Their meaning vectors, in the same order (null when meaning is off).</param>
    public ListRanker(long[] paperIds, float[]?[]? vectors)
    {
        _paperIds = paperIds;
        _vectors = vectors;
        _scores = new double[paperIds.Length];
        _candidate = new bool[paperIds.Length];
        _alreadySent = new bool[paperIds.Length];
        _placeOf = paperIds.Select((id, place) => (id, place)).ToDictionary(paper => paper.id, paper => paper.place);
    }

    public List<PaperMatch> Rank(
        IReadOnlyList<string> topics, IReadOnlyDictionary<string, TopicHit[]> hits, int maxPapers, FeedbackExamples? feedback, long[]? alreadySent)
    {
        Mark(alreadySent, true);
        _maskWords = (topics.Count + 63) / 64;
        if (_mentions.Length < _paperIds.Length * _maskWords)
        {
            _mentions = new ulong[_paperIds.Length * _maskWords];
            _closeTo = new ulong[_paperIds.Length * _maskWords];
        }
        for (var position = 0; position < topics.Count; position++)
        {
            if (!hits.TryGetValue(topics[position], out var topicHits))
            {
                continue;
            }
            foreach (var hit in topicHits)
            {
                if (_alreadySent[hit.Paper])
                {
                    continue;
                }
                if (!_candidate[hit.Paper])
                {
                    _candidate[hit.Paper] = true;
                    _candidates.Add(hit.Paper);
                    _scores[hit.Paper] = hit.Score;
                    Array.Clear(_mentions, hit.Paper * _maskWords, _maskWords);
                    Array.Clear(_closeTo, hit.Paper * _maskWords, _maskWords);
                }
                else
                {
                    _scores[hit.Paper] = Math.Max(_scores[hit.Paper], hit.Score);
                }
                (hit.ByMeaning ? _closeTo : _mentions)[hit.Paper * _maskWords + position / 64] |= 1UL << (position % 64);
            }
        }
        if (feedback is not null)
        {
            ApplyFeedback(feedback);
        }
        _candidates.Sort(this);
        var list = new List<PaperMatch>(Math.Min(maxPapers, _candidates.Count));
        foreach (var paper in _candidates)
        {
            if (list.Count == maxPapers || double.IsNegativeInfinity(_scores[paper]))
            {
                break;
            }
            list.Add(new PaperMatch(_paperIds[paper], _scores[paper], Topics(topics, _mentions, paper), Topics(topics, _closeTo, paper)));
        }
        foreach (var paper in _candidates)
        {
            _candidate[paper] = false;
        }
        _candidates.Clear();
        Mark(alreadySent, false);
        return list;
    }

    private void Mark(long[]? alreadySent, bool sent)
    {
        foreach (var id in alreadySent ?? [])
        {
            if (_placeOf.TryGetValue(id, out var place))
            {
                _alreadySent[place] = sent;
            }
        }
    }

    /// <summary>Best score first; among equals, the lower paper id.</summary>
    int IComparer<int>.Compare(int x, int y)
    {
        var byScore = _scores[y].CompareTo(_scores[x]);
        return byScore != 0 ? byScore : _paperIds[x].CompareTo(_paperIds[y]);
    }

    private void ApplyFeedback(FeedbackExamples feedback)
    {
        foreach (var paper in _candidates)
        {
            if (feedback.DislikedIds.Contains(_paperIds[paper]))
            {
                _scores[paper] = double.NegativeInfinity;
            }
            else if (_vectors?[paper] is { } vector)
            {
                _scores[paper] += FeedbackWeight * (Closest(vector, feedback.Liked) - Closest(vector, feedback.Disliked));
            }
        }
    }

    private static double Closest(float[] vector, List<float[]> examples)
    {
        var best = 0f;
        foreach (var example in examples)
        {
            best = Math.Max(best, TensorPrimitives.Dot(vector, example));
        }
        return best;
    }

    /// <summary>The topics whose bits are set for the paper, in the subscriber's order.</summary>
    private List<string> Topics(IReadOnlyList<string> topics, ulong[] masks, int paper)
    {
        var found = new List<string>();
        for (var word = 0; word < _maskWords; word++)
        {
            for (var bits = masks[paper * _maskWords + word]; bits != 0; bits &= bits - 1)
            {
                found.Add(topics[word * 64 + BitOperations.TrailingZeroCount(bits)]);
            }
        }
        return found;
    }
}
